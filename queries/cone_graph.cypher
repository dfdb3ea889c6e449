// name: cone_graph
// description: The cone of a neuron two layers deep, as paths for Neo4j Browser's graph view:
//   the neuron ($layer, $index), the neurons feeding it and the neurons feeding those, with
//   the W edges between them (at most $limit paths, so a dense neuron's fan-in is cut short).
//   queries/weightgraph.grass styles it (`weightgraph browser` applies it). On a channel model
//   $index is the channel and the paths follow CW edges.
// params: $model (string), $layer (string), $index (int), $limit (int, default 100)
// returns: path
CALL () {
  MATCH (n:Neuron {model: $model, layer: $layer, index: $index})
  MATCH path = (n)<-[:W*1..2]-(:Neuron)
  RETURN path
  UNION ALL
  MATCH (n:Channel {model: $model, layer: $layer, channel: $index})
  MATCH path = (n)<-[:CW*1..2]-(:Channel)
  RETURN path
}
RETURN path
LIMIT $limit
