# capnp names the implicit param struct of `get` GetParams, inside the interface's C++ type; a
# struct declared there under the same name collides with it.
# expect: collision_params_struct.capnp: error: interface Kv, method get @0: generates the C++ name "GetParams" (capnp's struct for its params), which the nested declaration GetParams also generates
@0xd1f4a6b2c3e5f702;

using Harrow = import "/harrow/actor.capnp";

interface Kv $Harrow.actor {
  get @0 (key :Text) -> (value :Text);
  struct GetParams { key @0 :Text; }
}
