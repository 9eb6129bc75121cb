# The annotations that turn a plain Cap'n Proto interface into a harrow actor.
#
#   using Harrow = import "/harrow/actor.capnp";
#
#   interface Counter $Harrow.actor {
#     add @0 (n :Int64) -> (total :Int64);                          # a call
#
#     count @1 (upTo :UInt32) -> () $Harrow.stream(item = "Tick");  # a stream of Tick
#     struct Tick { value @0 :Int64; }
#
#     session @2 (label :Text) -> (total :Int64)                    # a context
#         $Harrow.context(started = "Ready", callerSends = "Delta", calleeSends = "Total");
#     struct Ready { start @0 :Int64; }
#     struct Delta { by @0 :Int64; }
#     struct Total { value @0 :Int64; }
#   }
#
# A method without a harrow annotation is a call: params in, one result out. capnpc-harrow
# (codegen/) turns each `$Harrow.actor` interface Foo into FooActor::Server (implement it in the
# actor) and FooActor::Portal (call it from anywhere); harrow_capnp_library in harrow.bzl runs it.
#
# Naming a struct in an annotation: annotation values cannot hold types, so `item`, `started`,
# `callerSends` and `calleeSends` are struct *names*, resolved by capnpc-harrow like this:
#   1. The first part of the name ("Tick" in "Tick", "Common" in "Common.Tick") is looked up in
#      the actor interface's nested declarations, then in each enclosing scope outwards, then
#      among the file's top-level declarations, then among the top-level declarations of every
#      file this one imports (a name found in two imported files is an error: ambiguous). An
#      imported file need not be on the same `capnp compile` command line (harrow_capnp_library
#      compiles only `srcs`; shared schemas come through `capnp_deps`): capnpc-harrow compiles
#      an import capnp did not load itself.
#   2. Each further part ("Tick" in "Common.Tick", "Inner" in "Outer.Inner") is looked up in the
#      nested declarations of what the previous part found.
#   3. The result must be a non-generic struct; an enum, interface, const, annotation or unknown
#      name fails the build with an error naming the file, interface and method.
# `using` aliases are not visible to the generator (capnp does not record them): write the name
# of the declaration itself.
#
# What is rejected (capnpc-harrow exits 1 naming file, interface and method): a stream without
# an item; a stream whose results are not empty `()`; a context without `started`; a method with
# both $stream and $context; $stream/$context in an interface that is not $actor; generic
# interfaces, interfaces that extend others, generic methods or generic param/result structs;
# method names that clash with harrow's own members (dispatch, methodKind, raw, ...). Fields a
# kind cannot have (`started` on a stream, `item` on a context) are capnp compile errors already,
# since each annotation takes its own struct; a call has no annotation, so nothing to misplace.

@0xef7b42a775755cc7;

$import "/capnp/c++.capnp".namespace("harrow::annotations");

annotation actor @0x96285979feac03a8 (interface) :Void;
# Marks an interface as a harrow actor interface: capnpc-harrow generates its Server and Portal.

annotation stream @0xe59b6c2f1a4a5bd1 (method) :StreamOptions;
# A stream (tractor: open_stream_from): the callee yields `item` structs until it returns; the
# caller reads them with flow control. The method's results must be empty: `-> ()`.

struct StreamOptions {
  item @0 :Text;  # the struct the callee yields (required)
}

annotation context @0xbd7d92b3bbb355a0 (method) :ContextOptions;
# A context (tractor: open_context): the callee first sends `started`, then both sides may stream
# items (caller -> callee: `callerSends`, callee -> caller: `calleeSends`; leave one out for a
# direction that carries nothing), and finally the callee returns the method's results.

struct ContextOptions {
  started @0 :Text;      # the struct the callee sends once it is ready (required)
  callerSends @1 :Text;  # the struct the caller streams to the callee (optional)
  calleeSends @2 :Text;  # the struct the callee streams to the caller (optional)
}
