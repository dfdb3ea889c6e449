// name: trace_value
// description: A neuron under a stored trace (`weightgraph trace --model ... --name ...`):
//   its value, whether it is active, its contribution to the trace's target (null without
//   one) and, for a max/min neuron, the neuron it takes (chosen_*; null for none). No row
//   when the trace does not hold the neuron.
// params: $model (string), $trace (string), $layer (string), $index (int)
// returns: id, layer, index, value, active, contribution, chosen_id, chosen_layer, chosen_index
MATCH (t:Trace {name: $trace, model: $model})
MATCH (c:TraceChunk {trace: $trace, layer: $layer, chunk: $index / t.chunk})
WITH c, $index % t.chunk AS k
WHERE NOT isNaN(c.value[k])
OPTIONAL MATCH (n:Neuron {model: $model, layer: $layer, index: $index})
OPTIONAL MATCH (s:Neuron {model: $model, id: c.chosen[k]})
RETURN n.id AS id, $layer AS layer, $index AS index, c.value[k] AS value,
       c.active[k] AS active, c.contribution[k] AS contribution,
       s.id AS chosen_id, s.layer AS chosen_layer, s.index AS chosen_index
