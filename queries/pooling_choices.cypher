// name: pooling_choices
// description: Every candidate input of a max-pooling neuron (op 'max'): each in-bounds
//   window entry is an edge, so these are all the values the maximum can pick. No rows when
//   the neuron is not a max-pooling neuron.
// params: $model (string), $layer (string), $index (int)
// returns: pool_id, id, layer, layer_index, index
MATCH (p:Neuron {model: $model, layer: $layer, index: $index})
WHERE p.op = 'max'
MATCH (p)<-[:W]-(s:Neuron)
RETURN p.id AS pool_id, s.id AS id, s.layer AS layer, s.layer_index AS layer_index,
       s.index AS index
ORDER BY id
