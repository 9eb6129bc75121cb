# The tree example: one actor, Node, that grows a subtree of actors below itself.
@0xb5e2dc0de43da131;

using Harrow = import "/harrow/actor.capnp";

interface Node $Harrow.actor {
  # One node of a supervision tree; every node is its own process.

  grow @0 (depth :UInt32, width :UInt32, failAt :List(Text), hold :Bool) -> (nodes :UInt32);
  # A call. With depth > 0 the node opens its own actor nursery, spawns `width` children (named
  # "<its name>.<i>") and has each grow depth - 1 more levels; with depth 0 it is a leaf.
  # A node fails (raises tree.NodeFailed) once its subtree has grown if its name is in `failAt`,
  # or if it is a leaf and `failAt` holds "leaves". Its children's errors are raised with its
  # own, together. Returns how many nodes the subtree holds, this one included.
  # With `hold`, a leaf does not return: it holds the tree up until it is cancelled (the root's
  # Ctrl-C), so that a tool such as `harrow ps` can look at the live tree.
}
