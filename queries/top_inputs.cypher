// name: top_inputs
// description: The $k strongest incoming connections of a neuron, by |weight| (ties by
//   source id, so the order is deterministic).
// params: $model (string), $layer (string), $index (int), $k (int, default 10)
// returns: id, layer, index, weight
MATCH (n:Neuron {model: $model, layer: $layer, index: $index})<-[w:W]-(s:Neuron)
RETURN s.id AS id, s.layer AS layer, s.index AS index, w.weight AS weight
ORDER BY abs(w.weight) DESC, id ASC
LIMIT $k
