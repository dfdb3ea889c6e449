// name: layer_weight_stats
// description: Statistics of the weights entering each layer: count, min, max, mean and
//   population standard deviation (stDevP). Reads every edge of the model (or of $layer
//   only, when given): on a large model pass $layer. On a channel model the weights are
//   the channel edges' (the L1 norm of each kernel, 1.0 without one).
// params: $model (string), $layer (string, default null)
// returns: layer_index, layer, edges, min, max, mean, std
CALL () {
  MATCH (n:Neuron {model: $model})<-[w:W]-()
  // 'id IS NOT NULL' lets the planner seek the (model, id) index instead of scanning all models.
  WHERE n.id IS NOT NULL AND ($layer IS NULL OR n.layer = $layer)
  RETURN n.layer_index AS layer_index, n.layer AS layer, w.weight AS weight
  UNION ALL
  MATCH (n:Channel {model: $model})<-[w:CW]-()
  WHERE n.id IS NOT NULL AND ($layer IS NULL OR n.layer = $layer)
  RETURN n.layer_index AS layer_index, n.layer AS layer, w.weight AS weight
}
RETURN layer_index, layer, count(weight) AS edges,
       min(weight) AS min, max(weight) AS max, avg(weight) AS mean, stDevP(weight) AS std
ORDER BY layer_index
