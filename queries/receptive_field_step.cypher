// name: receptive_field_step
// description: One stage of receptive_field, for loader.queries.receptive_field, which runs
//   it layer by layer with no depth limit: $frontier is a list of [neuron id, paths] pairs
//   (the frontier neurons of one layer and their path counts to the target); every source
//   neuron feeding them comes back once, with the paths summed over its edges into the
//   frontier. Aggregating by node before reading properties keeps the work per edge to one
//   expand and one hash-aggregation update (PROFILE: 1 db hit per edge).
// params: $model (string), $frontier (list)
// returns: id, layer, layer_index, index, is_input, paths
UNWIND $frontier AS f
MATCH (n:Neuron {model: $model, id: f[0]})<-[:W]-(s)
WITH s, sum(f[1]) AS paths
RETURN s.id AS id, s.layer AS layer, s.layer_index AS layer_index, s.index AS index,
       s.op = 'input' AS is_input, paths
