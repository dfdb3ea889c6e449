// name: degree_distribution
// description: Per layer, the histogram of in-degrees and of out-degrees: how many neurons
//   of the layer have each degree. A conv layer with 'same' padding shows its border effects
//   here (fewer in-bounds window entries at the edges).
// params: $model (string), $layer (string, default null)
// returns: layer_index, layer, direction, degree, neurons
MATCH (n:Neuron {model: $model})
// 'id IS NOT NULL' lets the planner seek the (model, id) index instead of scanning all models.
WHERE n.id IS NOT NULL AND ($layer IS NULL OR n.layer = $layer)
UNWIND [['in', COUNT { (n)<-[:W]-() }], ['out', COUNT { (n)-[:W]->() }]] AS d
RETURN n.layer_index AS layer_index, n.layer AS layer, d[0] AS direction, d[1] AS degree,
       count(*) AS neurons
ORDER BY layer_index, direction, degree
