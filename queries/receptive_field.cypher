// Generated from one stage by loader/neo4j/receptive_field.py: do not edit by hand. Regenerate:
//   python -m loader.neo4j.receptive_field > queries/receptive_field.cypher
// name: receptive_field
// description: Every input neuron that reaches the neuron ($layer, $index), with the NUMBER OF
//   PATHS from it, counted without enumerating paths (they explode: ~8e17 paths reach one
//   input pixel of VGG16 block3_conv3 at 32x32). Dynamic programming over layers: the frontier
//   holds (neuron, paths to the target); each stage takes the frontier neurons of the highest
//   layer_index, replaces each by its sources (paths summed over the edges into it), and keeps
//   the rest, so every edge of the cone is read once and skip connections (Add) are counted
//   right. Cypher has no loops, so the stage is written out 24 times: enough for
//   24 neuron layers between the input and the target (VGG16 needs 21 for its last layer).
//   complete is false when the cone is deeper. paths is an integer up to 2^63-1, a float past
//   it (sum() switches). weightgraph itself (run_query, `weightgraph query receptive_field`)
//   runs the procedure named below instead: the same stage (receptive_field_step.cypher)
//   sent layer by layer from Python, with no depth limit, no planning cost for the 24 stages
//   (~7 s the first time), and each layer split over concurrent transactions.
// procedure: receptive_field
// params: $model (string), $layer (string), $index (int)
// returns: id, layer, index, paths, complete
MATCH (t:Neuron {model: $model, layer: $layer, index: $index})
WITH [{n: t, paths: 1}] AS frontier
// stage 1
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 2
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 3
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 4
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 5
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 6
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 7
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 8
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 9
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 10
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 11
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 12
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 13
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 14
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 15
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 16
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 17
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 18
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 19
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 20
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 21
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 22
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 23
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
// stage 24
CALL {
  WITH frontier
  WITH frontier, reduce(top = -1, f IN frontier |
         CASE WHEN f.n.op <> 'input' AND f.n.layer_index > top THEN f.n.layer_index ELSE top END) AS top
  UNWIND frontier AS f
  WITH f.n AS n, f.paths AS paths, top
  CALL {
    WITH n, top
    MATCH (s:Neuron)-[:W]->(n) WHERE n.layer_index = top
    RETURN s AS m
    UNION ALL
    WITH n, top
    WITH n WHERE n.layer_index <> top
    RETURN n AS m
  }
  WITH m, sum(paths) AS paths
  RETURN collect({n: m, paths: paths}) AS next
}
WITH next AS frontier
UNWIND frontier AS f
WITH f, all(g IN frontier WHERE g.n.op = 'input') AS complete
RETURN f.n.id AS id, f.n.layer AS layer, f.n.index AS index, f.paths AS paths, complete
ORDER BY id
