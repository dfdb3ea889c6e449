// name: layer_weight_stats
// description: Statistics of the weights entering each layer: count, min, max, mean and
//   population standard deviation (stDevP). Reads every edge of the model (or of $layer
//   only, when given): on a large model pass $layer.
// params: $model (string), $layer (string, default null)
// returns: layer_index, layer, edges, min, max, mean, std
MATCH (n:Neuron {model: $model})<-[w:W]-()
// 'id IS NOT NULL' lets the planner seek the (model, id) index instead of scanning all models.
WHERE n.id IS NOT NULL AND ($layer IS NULL OR n.layer = $layer)
RETURN n.layer_index AS layer_index, n.layer AS layer, count(w) AS edges,
       min(w.weight) AS min, max(w.weight) AS max, avg(w.weight) AS mean,
       stDevP(w.weight) AS std
ORDER BY layer_index
