// name: trace_active_subgraph
// description: The active subgraph around a neuron under a stored trace: its incoming edges
//   from active neurons (into a max/min neuron only the chosen one) and its outgoing edges
//   to active neurons (into a max/min neuron only if this one is its choice), with the
//   values at both ends. No rows when the neuron is inactive.
// params: $model (string), $trace (string), $layer (string), $index (int)
// returns: direction, id, layer, index, weight, value, neuron_value
MATCH (t:Trace {name: $trace, model: $model})
MATCH (n:Neuron {model: $model, layer: $layer, index: $index})
MATCH (nc:TraceChunk {trace: $trace, layer: $layer, chunk: $index / t.chunk})
WITH t, n, nc.active[$index % t.chunk] AS n_active, nc.value[$index % t.chunk] AS n_value,
     nc.chosen[$index % t.chunk] AS n_chosen
WHERE n_active
CALL (t, n, n_chosen) {
  MATCH (s:Neuron)-[w:W]->(n)
  MATCH (sc:TraceChunk {trace: t.name, layer: s.layer, chunk: s.index / t.chunk})
  WITH s, w, sc.active[s.index % t.chunk] AS a, sc.value[s.index % t.chunk] AS v
  WHERE a AND (n_chosen IS NULL OR s.id = n_chosen)
  RETURN 'in' AS direction, s AS other, w.weight AS weight, v AS value
  UNION ALL
  MATCH (n)-[w:W]->(d:Neuron)
  MATCH (dc:TraceChunk {trace: t.name, layer: d.layer, chunk: d.index / t.chunk})
  WITH d, w, dc.active[d.index % t.chunk] AS a, dc.value[d.index % t.chunk] AS v,
       dc.chosen[d.index % t.chunk] AS d_chosen
  WHERE a AND (d_chosen IS NULL OR d_chosen = n.id)
  RETURN 'out' AS direction, d AS other, w.weight AS weight, v AS value
}
RETURN direction, other.id AS id, other.layer AS layer, other.index AS index, weight, value,
       n_value AS neuron_value
ORDER BY direction, id
