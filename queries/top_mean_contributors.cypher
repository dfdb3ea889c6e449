// name: top_mean_contributors
// description: The $k neurons contributing most, on average over a stored aggregated trace's
//   inputs, to its target (each input's own predicted class with `--target predicted`): by
//   |mean_contribution| (mean of value x gradient), or with $by = 'abs' by
//   mean_abs_contribution (mean of |value x gradient|: how much a neuron matters whichever
//   way it pushes); in one layer ($layer) or in all. Ties by layer and index. Reads the
//   trace's chunks only, no W edge.
// params: $model (string), $trace (string), $layer (string, default null),
//   $k (int, default 10), $by (string, default mean)
// returns: id, layer, index, mean_value, active_rate, mean_contribution,
//   mean_abs_contribution, target
MATCH (t:Trace {name: $trace, model: $model})
WHERE t.kind = 'aggregate'
MATCH (c:TraceChunk {trace: $trace})
WHERE ($layer IS NULL OR c.layer = $layer) AND c.mean_contribution IS NOT NULL
UNWIND range(0, size(c.mean_contribution) - 1) AS k
WITH t, c, k, c.mean_contribution[k] AS mean, c.mean_abs_contribution[k] AS mean_abs
WHERE NOT isNaN(mean) AND mean_abs <> 0.0
WITH t, c.layer AS layer, c.chunk * t.chunk + k AS index, c.mean_value[k] AS mean_value,
     c.active_rate[k] AS active_rate, mean, mean_abs,
     CASE $by WHEN 'abs' THEN mean_abs ELSE abs(mean) END AS score
ORDER BY score DESC, layer, index
LIMIT $k
OPTIONAL MATCH (n:Neuron {model: $model, layer: layer, index: index})
RETURN n.id AS id, layer, index, mean_value, active_rate, mean AS mean_contribution,
       mean_abs AS mean_abs_contribution, t.target AS target
ORDER BY CASE $by WHEN 'abs' THEN mean_abs ELSE abs(mean) END DESC, layer, index
