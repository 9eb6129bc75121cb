@0xaf1c51e1808890a0;
# The indexer example's worker: counts the words of the files it is sent, one answer per file.

using Harrow = import "/harrow/actor.capnp";

interface Indexer $Harrow.actor {
  index @0 () -> () $Harrow.context(started = "Ready", callerSends = "File", calleeSends = "Counts");
  # A worker pool's context: for each File the caller streams, its word counts, in order.

  struct Ready {}

  struct File {
    path @0 :Text;
    slowMillis @1 :UInt32;  # a slow disk, simulated: wait this long before reading
  }

  struct Counts {
    words @0 :List(WordCount);  # every distinct word of the file
    total @1 :UInt64;           # words in the file
  }

  struct WordCount {
    word @0 :Text;
    count @1 :UInt32;
  }
}
