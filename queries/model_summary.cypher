// name: model_summary
// description: Every layer of a loaded model as the graph holds it: its neurons, op and the
//   edges that enter and leave it (counted in Neo4j, so it also checks a load). Shape-only
//   layers (Flatten, Reshape, ...) own no neurons and do not appear; Model.graph_data lists them.
//   On a channel model (--granularity channel) "neurons" counts the layer's channel nodes
//   and the edges are channel edges.
// params: $model (string)
// returns: layer_index, layer, op, neurons, edges_in, edges_out
CALL () {
  MATCH (n:Neuron {model: $model})
  // 'id IS NOT NULL' lets the planner seek the (model, id) index instead of scanning all models.
  WHERE n.id IS NOT NULL
  RETURN n.layer_index AS layer_index, n.layer AS layer, n.op AS op,
         COUNT { (n)<-[:W]-() } AS edges_in, COUNT { (n)-[:W]->() } AS edges_out
  UNION ALL
  MATCH (n:Channel {model: $model})
  WHERE n.id IS NOT NULL
  RETURN n.layer_index AS layer_index, n.layer AS layer, n.op AS op,
         COUNT { (n)<-[:CW]-() } AS edges_in, COUNT { (n)-[:CW]->() } AS edges_out
}
WITH layer_index, layer, op, count(*) AS neurons, sum(edges_in) AS edges_in,
     sum(edges_out) AS edges_out
RETURN layer_index, layer, op, neurons, edges_in, edges_out
ORDER BY layer_index
