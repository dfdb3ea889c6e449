// name: dead_relus
// description: ReLU neurons (activation 'relu' or 'relu6') whose bias and incoming weights are
//   all <= 0. Such a neuron outputs 0 whenever its inputs are non-negative (for instance when
//   they are ReLU or max-pooled ReLU outputs); with inputs that can be negative (the raw
//   input, a linear layer) it is only a candidate. $layer restricts the search to one layer.
// params: $model (string), $layer (string, default null)
// returns: layer_index, layer, index, id, bias, in_degree
MATCH (n:Neuron {model: $model})
// 'id IS NOT NULL' lets the planner seek the (model, id) index instead of scanning all models.
WHERE n.id IS NOT NULL AND ($layer IS NULL OR n.layer = $layer)
  AND n.activation IN ['relu', 'relu6'] AND n.bias <= 0
  AND NOT EXISTS { (n)<-[w:W]-() WHERE w.weight > 0 }
RETURN n.layer_index AS layer_index, n.layer AS layer, n.index AS index, n.id AS id,
       n.bias AS bias, COUNT { (n)<-[:W]-() } AS in_degree
ORDER BY id
