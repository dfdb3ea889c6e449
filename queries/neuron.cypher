// name: neuron
// description: One neuron, found by its layer name and flat index (C order, batch axis
//   dropped): its id, op, bias, activation and in/out degrees.
// params: $model (string), $layer (string), $index (int)
// returns: id, layer, layer_index, index, op, bias, activation, in_degree, out_degree
MATCH (n:Neuron {model: $model, layer: $layer, index: $index})
RETURN n.id AS id, n.layer AS layer, n.layer_index AS layer_index, n.index AS index,
       n.op AS op, n.bias AS bias, n.activation AS activation,
       COUNT { (n)<-[:W]-() } AS in_degree,
       COUNT { (n)-[:W]->() } AS out_degree
