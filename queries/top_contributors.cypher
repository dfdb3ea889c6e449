// name: top_contributors
// description: The $k neurons contributing most (by |value x gradient|) to a stored trace's
//   target, in one layer ($layer) or in all; ties by layer and index. Reads the trace's
//   chunks only (O(neurons of the trace)), no W edge.
// params: $model (string), $trace (string), $layer (string, default null), $k (int, default 10)
// returns: id, layer, index, value, contribution, target
MATCH (t:Trace {name: $trace, model: $model})
MATCH (c:TraceChunk {trace: $trace})
WHERE ($layer IS NULL OR c.layer = $layer) AND c.contribution IS NOT NULL
UNWIND range(0, size(c.contribution) - 1) AS k
WITH t, c, k, c.contribution[k] AS contribution
WHERE NOT isNaN(contribution) AND contribution <> 0.0
WITH t, c.layer AS layer, c.chunk * t.chunk + k AS index, c.value[k] AS value, contribution
ORDER BY abs(contribution) DESC, layer, index
LIMIT $k
OPTIONAL MATCH (n:Neuron {model: $model, layer: layer, index: index})
RETURN n.id AS id, layer, index, value, contribution, t.target AS target
ORDER BY abs(contribution) DESC, layer, index
