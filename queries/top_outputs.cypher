// name: top_outputs
// description: The $k strongest outgoing connections of a neuron, by |weight| (ties by
//   target id, so the order is deterministic).
// params: $model (string), $layer (string), $index (int), $k (int, default 10)
// returns: id, layer, index, weight
MATCH (n:Neuron {model: $model, layer: $layer, index: $index})-[w:W]->(t:Neuron)
RETURN t.id AS id, t.layer AS layer, t.index AS index, w.weight AS weight
ORDER BY abs(w.weight) DESC, id ASC
LIMIT $k
