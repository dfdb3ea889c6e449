// name: top_outputs
// description: The $k strongest outgoing connections of a neuron, by |weight| (ties by
//   target id, so the order is deterministic). On a channel model (--granularity channel)
//   $index is the channel, and so is the returned index; weight is then the L1 norm of the
//   kernel between the two channels.
// params: $model (string), $layer (string), $index (int), $k (int, default 10)
// returns: id, layer, index, weight
CALL () {
  MATCH (n:Neuron {model: $model, layer: $layer, index: $index})-[w:W]->(t:Neuron)
  RETURN t.id AS id, t.layer AS layer, t.index AS index, w.weight AS weight
  UNION ALL
  MATCH (n:Channel {model: $model, layer: $layer, channel: $index})-[w:CW]->(t:Channel)
  RETURN t.id AS id, t.layer AS layer, t.channel AS index, w.weight AS weight
}
RETURN id, layer, index, weight
ORDER BY abs(weight) DESC, id ASC
LIMIT $k
