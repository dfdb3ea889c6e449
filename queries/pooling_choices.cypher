// name: pooling_choices
// description: Every candidate input of a max-pooling neuron (op 'max'): each in-bounds
//   window entry is an edge, so these are all the values the maximum can pick. With $trace
//   (a stored trace), `chosen` says which one it takes for that input (true on exactly one
//   row, unless a padding zero wins) and `value` is each candidate's value; both are null
//   without a trace. No rows when the neuron is not a max-pooling neuron.
// params: $model (string), $layer (string), $index (int), $trace (string, default null)
// returns: pool_id, id, layer, layer_index, index, chosen, value
MATCH (p:Neuron {model: $model, layer: $layer, index: $index})
WHERE p.op = 'max'
OPTIONAL MATCH (t:Trace {name: $trace, model: $model})
OPTIONAL MATCH (pc:TraceChunk {trace: t.name, layer: $layer, chunk: $index / t.chunk})
WITH p, t, pc.chosen[$index % t.chunk] AS chosen_id
MATCH (p)<-[:W]-(s:Neuron)
OPTIONAL MATCH (sc:TraceChunk {trace: t.name, layer: s.layer, chunk: s.index / t.chunk})
RETURN p.id AS pool_id, s.id AS id, s.layer AS layer, s.layer_index AS layer_index,
       s.index AS index, CASE WHEN t IS NULL THEN null ELSE s.id = chosen_id END AS chosen,
       sc.value[s.index % t.chunk] AS value
ORDER BY id
