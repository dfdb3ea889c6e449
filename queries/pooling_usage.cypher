// name: pooling_usage
// description: How a stored aggregated trace (`weightgraph trace --model M --inputs SET
//   --aggregate --name T`) used each max/min pooling layer: per layer and window position
//   (the rank of the entry among the neuron's inputs in id order: the window's order, shifted
//   only at padded borders) the pooling edges there, their share of all (neuron, input)
//   choices, and how many were never chosen on the set; `padding_share` is the layer's share
//   of choices a padding zero took. Reads the trace's chunks only (O(pooling edges)), no W
//   edge. $layer restricts it to one layer.
// params: $model (string), $trace (string), $layer (string, default null)
// returns: layer_index, layer, position, edges, share, never_chosen, neurons, padding_share
MATCH (t:Trace {name: $trace, model: $model})
WHERE t.kind = 'aggregate'
MATCH (c:TraceChunk {trace: $trace})
WHERE c.choice_start IS NOT NULL AND ($layer IS NULL OR c.layer = $layer)
WITH c, [k IN range(0, size(c.mean_value) - 1) WHERE NOT isNaN(c.mean_value[k])] AS held
WITH c.layer_index AS layer_index, c.layer AS layer,
     collect({chunk: c, held: held}) AS chunks, sum(size(held)) AS neurons,
     sum(reduce(s = 0.0, k IN held | s + c.padding_rate[k])) AS padding
UNWIND chunks AS part
WITH layer_index, layer, neurons, padding, part.chunk AS c, part.held AS held
UNWIND held AS k
UNWIND range(c.choice_start[k], c.choice_start[k + 1] - 1) AS e
WITH layer_index, layer, neurons, padding, e - c.choice_start[k] AS position,
     c.choice_rate[e] AS rate
RETURN layer_index, layer, position, count(*) AS edges, sum(rate) / neurons AS share,
       sum(CASE WHEN rate = 0.0 THEN 1 ELSE 0 END) AS never_chosen, neurons,
       padding / neurons AS padding_share
ORDER BY layer_index, position
