// name: never_active
// description: Per layer, the neurons a stored aggregated trace never saw active (active_rate
//   0: the activation's slope was 0, or no input was chosen, on every input of the set):
//   how many of the layer's neurons held by the trace, how many of them were also 0 on every
//   input (`always_zero`: what the effective graph drops), and the first $k of their
//   indexes. Reads the trace's chunks only. $layer restricts it to one layer.
// params: $model (string), $trace (string), $layer (string, default null), $k (int, default 20)
// returns: layer_index, layer, neurons, never_active, always_zero, share, indexes
MATCH (t:Trace {name: $trace, model: $model})
WHERE t.kind = 'aggregate'
MATCH (c:TraceChunk {trace: $trace})
WHERE $layer IS NULL OR c.layer = $layer
UNWIND range(0, size(c.active_rate) - 1) AS k
WITH t, c, k WHERE NOT isNaN(c.active_rate[k])
WITH c.layer_index AS layer_index, c.layer AS layer, c.chunk * t.chunk + k AS index,
     c.active_rate[k] = 0.0 AS never, c.active_rate[k] = 0.0 AND c.nonzero_rate[k] = 0.0 AS zero
ORDER BY layer_index, index
WITH layer_index, layer, count(*) AS neurons,
     sum(CASE WHEN never THEN 1 ELSE 0 END) AS never_active,
     sum(CASE WHEN zero THEN 1 ELSE 0 END) AS always_zero,
     collect(CASE WHEN never THEN index END) AS never_indexes
RETURN layer_index, layer, neurons, never_active, always_zero,
       toFloat(never_active) / neurons AS share, never_indexes[0..$k] AS indexes
ORDER BY layer_index
