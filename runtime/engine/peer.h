// Peer: the protocol engine for one channel to another actor, after the hello handshake.
//
// Both ends of a channel are symmetric: either may start tasks (calls, streams, contexts) on the
// other. A Peer routes every received message by call id to the task it belongs to, runs
// incoming tasks on the actor's servers, and is the RawPortal through which typed portals start
// outgoing ones. docs/PROTOCOL.md is the state machine it implements.
//
// Failure containment: a message the state machine forbids gets an `error` (protocolViolation)
// back to the sender for that call id and harms nothing else. So does one that does not decode
// (runtime/engine/internal/decode.h): every message's envelope is checked against wire.capnp
// before it is routed, every payload against its declared type before it is read. A malformed
// frame ends this channel only; a lost channel cancels this channel's incoming tasks (scope
// cancellation) and fails its outgoing ones with TransportClosed, or with the cause its owner
// knows (explainLossWith(): a supervisor's ActorDied).

#pragma once

#include <harrow/ipc/channel.h>
#include <harrow/co/nursery.h>
#include <harrow/engine/auth.h>
#include <harrow/engine/metrics.h>
#include <harrow/engine/remote_error.h>
#include <harrow/typed/task.h>

#include <kj/function.h>
#include <kj/map.h>
#include <kj/time.h>

namespace harrow {

class Peer;
// The engine's own (runtime/engine/internal/peer_internal.h, not API).
class PeerRoute;
class WireOutgoing;
template <typename Builder>
struct NewMessage;

// The smallest message limit an actor may set: control messages and errors must always fit.
constexpr size_t MIN_MAX_MESSAGE_BYTES = 4096;

// The message limit an actor starts with: HARROW_MAX_MESSAGE_BYTES if set (harrow::main sets it
// from --harrow-max-message=BYTES), else DEFAULT_MAX_FRAME_BYTES (64 MiB). Throws for a value
// parseMessageBytes() refuses.
size_t defaultMaxMessageBytes();

// "1048576", "64K", "256M", "1G" (binary multiples) -> bytes. Throws, saying what is accepted,
// for anything else or a value below MIN_MAX_MESSAGE_BYTES.
size_t parseMessageBytes(kj::StringPtr text);

// Whether the tree asks for encrypted channels: HARROW_ENCRYPT set and not "0" (harrow::main
// sets it from --harrow-encrypt, so children inherit it). docs/PROTOCOL.md, "Frame protection".
bool encryptFromEnvironment();

// Whether this side lets links between hosts without TLS go tagged but not encrypted:
// HARROW_INSECURE_LINKS set and not "0" (--harrow-insecure-links on harrow::main and harrow-node).
// Both ends of a link must say so (docs/PROTOCOL.md, "Frame protection" and "Links between hosts").
bool insecureLinksFromEnvironment();

struct PeerOptions {
  // Items a receiver accepts ahead of its consumer (the initial credit it grants, per stream
  // direction). The producer waits when it runs out; the receiver never buffers more.
  uint32_t window = 64;
  // A receiver whose items are small grows its window as its consumer takes them, up to
  // maxWindow items, while the items it could then hold stay within windowBytes (by their
  // average size so far): a producer on another CPU then never waits for credit, and a stream
  // of large items keeps the initial window (docs/PROTOCOL.md, "Flow control").
  uint32_t maxWindow = 1024;
  size_t windowBytes = 1u << 20;

  // This side's message limit on the channel; 0: the host's (PeerHost::maxMessageBytes()). The
  // Peer handshake() returns holds the limit both sides agreed on instead: the smaller of theirs.
  size_t maxMessageBytes = 0;

  // Until both proofs have checked out (docs/PROTOCOL.md, "hello"), frames over this many bytes are
  // malformed: a stranger's first frames cost this much memory at most, not the message limit.
  // A hello, a proof or a refusal takes well under 1 KiB.
  size_t preAuthFrameBytes = MIN_MAX_MESSAGE_BYTES;

  // Protocol violations a peer may commit on one channel (each answered as docs/PROTOCOL.md, "Flow
  // control" says) before it is taken as hostile and the channel is closed: a broken peer that
  // keeps sending what it must not costs this actor a bounded amount of work. 0: no limit.
  uint32_t maxViolations = 64;

  // Encrypt this side's channels that carry frame tags (every authenticated channel but a Unix
  // socket between processes of one user), as if HARROW_ENCRYPT were set: XChaCha20-Poly1305
  // instead of tags alone. Either side asking is enough (docs/PROTOCOL.md, "Frame protection").
  bool encrypt = false;

  // The channel is a link between hosts (<harrow/spawn/link.h>, harrow-node): without TLS
  // (linkOverTls false) its frames are encrypted unless this side runs with
  // --harrow-insecure-links, and a peer whose hello says otherwise is refused, naming the flag
  // (the hellos are in the proofs: a man in the middle cannot change either side's choice).
  bool link = false;
  bool linkOverTls = false;

  // What the transport binds this channel to, added to the handshake's transcript (the proofs and
  // the frame keys: docs/PROTOCOL.md, "authenticate"). Over TLS (linkOverTls, required there):
  // SHA-256 of the opener's certificate, then of the acceptor's, as this side saw them
  // (linkBinding() in <harrow/spawn/link.h>), so that a relay which terminates TLS with a
  // certificate of its own fails both proofs. Not owned: it must outlive the handshake.
  kj::ArrayPtr<const kj::byte> transportBinding;

  // A parent-child channel that is not trusted by construction: it runs through someone else's
  // relay between hosts (srun's stdin/stdout forwarding, plain TCP). Both ends prove the tree
  // secret as on any other channel (docs/PROTOCOL.md, "authenticate") and protect every frame
  // after it, as `link` says; the other end stays this actor's parent or child.
  bool parentChildOverRelay = false;

  // Over a Unix socket, frames (any message: stream items, params, results) of more than this
  // many bytes go through a ring of shared memory instead of the socket, if both sides' hellos
  // say so (docs/PROTOCOL.md, "Large frames through shared memory"). 0: never. Below it the socket
  // is as fast and costs no ring.
  size_t sharedMemoryThreshold = 16u << 10;
  // The size of this side's ring (created with the first large frame). Larger frames go each as a
  // sealed memfd of its own, read in place (their large values are built in it: no copy). Small
  // enough to stay in cache: a 2 MiB ring moved 64 KiB items with ~20% less CPU than an 8 MiB
  // one, 1 MiB items with ~40% less (bench/README.md, bulk_bench).
  size_t sharedMemoryRingBytes = 2u << 20;
};

// Why this side trusts the other end of a channel (docs/PROTOCOL.md, "authenticate").
enum class PeerTrust {
  TREE_SECRET,  // it proved in the handshake that it knows the tree's secret
  PARENT,       // it is this actor's parent: the socketpair this process inherited as fd 3
  CHILD,        // it is a child this actor spawned: the socketpair this actor made for it
};

// A snapshot of one task open on a channel (Peer::tasks()): what `harrow stacks` shows, through
// the introspection interface (idl/harrow/introspect.capnp). Read-only; nothing here refers back
// into the engine.
struct TaskInfo {
  uint64_t callId = 0;
  bool incoming = false;     // the peer started it and this actor runs it; else this actor called
  MethodKind kind = MethodKind::CALL;
  kj::String method;         // "Counter.count"; "" if unknown (a start sent without its type)
  kj::StringPtr state;       // "running", "open", "waiting for the result", "cancelling", ...
                             // (static text)
  kj::TimePoint openedAt = kj::origin<kj::TimePoint>();  // kj::systemCoarseMonotonicClock()
};

// Protocol violations by the peers of one actor, as its log shows them: per peer (by identity,
// whatever channel it came on), the first VIOLATIONS_IN_DETAIL at warning level with what was
// wrong, then at most one line per VIOLATION_SUMMARY_INTERVAL counting the ones since; every one
// at debug level. Never a stack trace: it would be this actor's, not the peer's. So a peer that
// holds the cookie and sends junk as fast as it can fills no disk (strangers never get this far:
// PeerHost::authenticationFailed).
class ViolationLog {
public:
  static constexpr uint32_t VIOLATIONS_IN_DETAIL = 3;
  static constexpr kj::Duration VIOLATION_SUMMARY_INTERVAL = 10 * kj::SECONDS;
  // Peers tracked at once; violations of peers beyond it share one entry.
  static constexpr size_t MAX_PEERS = 1024;

  void report(const ActorIdentity& peer, kj::StringPtr what);

private:
  struct Entry {
    uint64_t count = 0;
    uint64_t unlogged = 0;
    kj::TimePoint lastSummary = kj::origin<kj::TimePoint>();
  };
  kj::HashMap<kj::String, Entry> byPeer;
};

// What a Peer needs from the actor that owns it.
class PeerHost {
public:
  // The largest message (frame) this actor sends or accepts on a channel (docs/PROTOCOL.md,
  // "Transport and framing"), stated in its hellos: each channel uses the smaller of its two sides'
  // limits. A message over it fails where it is sent with harrow.MessageTooLarge
  // (isMessageTooLarge()). Setting it affects channels set up afterwards, and children spawned
  // afterwards inherit it (spawnSpec). At least MIN_MAX_MESSAGE_BYTES.
  size_t maxMessageBytes() const { return maxMessage; }
  void setMaxMessageBytes(size_t bytes);

  virtual const ActorIdentity& identity() const = 0;
  // The secret this actor's tree shares: what authenticated handshakes prove knowledge of.
  virtual const TreeSecret& treeSecret() const = 0;
  // A peer failed authentication (wrong secret, or no proof at all): the handshake refused it.
  virtual void authenticationFailed(const kj::Exception& why) { (void)why; }
  // The server for an actor interface this actor serves, if any.
  virtual kj::Maybe<ActorServer&> findServer(uint64_t interfaceId) = 0;
  // A channel-level message (call id 0) other than hello: spawnSpec, cancelActor, ...
  virtual void controlMessage(Peer& peer, wire::Message::Reader message) = 0;
  // Where incoming tasks run; nullptr while the actor serves none (starting up, shutting down):
  // a start then gets an error back.
  virtual kj::Maybe<TaskNursery&> serviceNursery() = 0;
  // An incoming task's handler raised `error` (not a cancellation), before the error goes back
  // to the caller: the debugger's post-mortem hook (<harrow/spawn/debug.h>).
  virtual void taskFailed(const kj::Exception& error) { (void)error; }
  // The clock of the deadlines incoming starts carry (the actor's event loop's timer).
  virtual kj::Timer& timer() = 0;

  // This actor's counters (<harrow/engine/metrics.h>); on when HARROW_METRICS is set.
  Metrics& metrics() { return metricsStore; }

  // Where its Peers log the violations of their peers.
  ViolationLog& violationLog() { return violations; }

  // Every Peer of this host that exists now, whatever its state (introspection walks them).
  kj::ArrayPtr<Peer* const> peers() const { return livePeers; }

private:
  size_t maxMessage = defaultMaxMessageBytes();
  Metrics metricsStore;
  ViolationLog violations;
  kj::Vector<Peer*> livePeers;  // maintained by Peer's constructor and destructor
  friend class Peer;
};

class Peer final : public RawPortal {
public:
  // `initiator`: whether this side opened the connection (it then allocates odd call ids).
  // options.maxMessageBytes (0: the host's) becomes the channel's frame limit both ways.
  Peer(kj::Own<Channel> channel, PeerHost& host, ActorIdentity remote, bool initiator,
       PeerOptions options = {}, PeerTrust trust = PeerTrust::TREE_SECRET);
  ~Peer() noexcept(false);
  KJ_DISALLOW_COPY(Peer);

  const ActorIdentity& remote() const { return remoteId; }
  PeerTrust trust() const { return trustedAs; }
  Channel& channel() { return *chan; }
  PeerHost& host() { return hostRef; }

  // Reads and routes messages until the channel ends; incoming tasks run in the host's service
  // nursery. Resolves on a clean EOF, throws TransportClosed or MalformedFrame otherwise. Either
  // way every task of this channel has been ended first.
  Co<void> serve();

  // One raw message, before serve() runs (e.g. the spawn spec right after the handshake).
  Co<kj::Own<capnp::MessageReader>> receiveOne();

  // The parent–child channel: once the spawn spec has gone out (parent) or come in (child), the
  // channel's limit is the one the spec carries (docs/PROTOCOL.md, "spawnSpec"). Before serve()
  // runs.
  void adoptMaxMessageBytes(size_t bytes);

  // A channel-level message builder (call id 0) and sending it.
  kj::Own<capnp::MallocMessageBuilder> newControlMessage();
  void send(kj::Own<capnp::MallocMessageBuilder> message);

  // For a PeerHost that does not accept a channel-level message it was given (controlMessage()):
  // answers it with a protocolViolation error "<its kind> <why>" ("cancelActor is honoured ...",
  // the kind named as wire.capnp names it, never its number), logged and counted against the peer
  // like any violation (PeerOptions::maxViolations).
  void refuseControlMessage(wire::Message::Reader message, kj::StringPtr why);

  // RawPortal
  kj::Own<OutgoingMessage> newStart(uint64_t interfaceId, uint16_t methodId) override;
  Co<kj::Own<IncomingMessage>> call(kj::Own<OutgoingMessage> start) override;
  Co<kj::Own<OutgoingTask>> open(kj::Own<OutgoingMessage> start, MethodKind kind) override;

  // A snapshot of the tasks open on this channel now, both directions, oldest first.
  kj::Vector<TaskInfo> tasks() const;

  bool isClosed() const { return closed; }
  const PeerOptions& getOptions() const { return options; }

  // The message limit both sides agreed on in their hellos (the smaller of the two).
  size_t maxMessageBytes() const { return options.maxMessageBytes; }
  // The frame `message` (one the engine handed out) would be on the wire: what that limit is
  // compared with.
  static size_t frameBytes(OutgoingMessage& message);

  // Resolves once this side has stopped serving the channel: it closed or failed (serve() ended),
  // serve() was cancelled, or the Peer was destroyed. Never rejects; any number of waiters.
  // The registry ties entries to the channel that registered them with it.
  kj::Promise<void> whenClosed() { return closedPromise.addBranch(); }

  // Resolves once no task (either direction) is open on this channel. After serve() has ended,
  // every task has been told so and is unwinding: the owner waits for this before destroying
  // the Peer, which the tasks still refer to.
  kj::Promise<void> whenDrained();

  // Why the channel was lost, as its owner knows it: a supervisor knows how its child died,
  // which the channel (EOF, ECONNRESET, EPIPE) cannot tell. With an explainer, a channel that
  // ends (clean EOF or TransportClosed; not a malformed frame, not cancellation) is explained
  // before its tasks fail: they, and every call or open started later, raise what `explain`
  // returns for the channel's own error. Until then send() drops messages on a broken channel
  // instead of throwing (its tasks learn of the loss, explained, through serve()). `explain`
  // must resolve promptly: the owner bounds it (a child's supervisor: the channel's own error if
  // the child has not exited within a second).
  using LossExplainer = kj::Function<kj::Promise<kj::Exception>(kj::Exception channelError)>;
  void explainLossWith(LossExplainer explain) { explainer = kj::mv(explain); }

  // Channel::whenWritable(); on a channel with a loss explainer, a failed write raises the
  // explained loss once serve() has it.
  kj::Promise<void> whenWritable();

private:
  // The engine's own: its task objects (runtime/engine/internal/, not API) route by call id
  // through PeerRoute and answer what the protocol forbids through these.
  friend class PendingCall;
  friend class OutgoingTaskImpl;
  friend class IncomingTaskImpl;
  friend class TaskStream;
  friend class WireOutgoing;

  void addRoute(uint64_t callId, PeerRoute& route);
  void removeRoute(uint64_t callId);
  // Logs the violation, then answers it (unless the channel is closed) with a protocolViolation
  // error for `callId`.
  void sendViolation(uint64_t callId, kj::StringPtr what);
  // Throws harrow.MessageTooLarge if `message` is over this channel's limit: "<what it is> is N
  // bytes, over the limit of L bytes ...". Nothing is sent either way. Returns its size.
  size_t checkSize(WireOutgoing& message);
  // The same for a frame of `bytes` (`atLeast`: a lower bound, while the message is built).
  void refuseOverLimit(WireOutgoing& message, uint64_t bytes, bool atLeast);
  // Sends `error` for `callId`. An error too large for the channel (a huge message or trace) is
  // replaced by a MessageTooLarge error that says so and quotes its beginning; `task` names the
  // task for that message.
  void sendError(uint64_t callId, const kj::Exception& error, wire::ErrorKind kind,
                 kj::StringPtr task);
  // Logs a violation by the peer through the host's ViolationLog (the trace, if any, at debug
  // level only).
  void logViolation(uint64_t callId, kj::StringPtr what, kj::Maybe<const kj::Exception&> trace);
  // Describes a task this side opened, for error messages: "the call Store.put to actor 'store'
  // (uuid)", from the start's params type if the typed layer set it.
  kj::String describeOutgoing(OutgoingMessage& start, MethodKind kind);

  kj::Own<Channel> chan;
  PeerHost& hostRef;
  ActorIdentity remoteId;
  PeerOptions options;
  PeerTrust trustedAs;
  uint64_t nextCallId;          // ours: odd for the initiator, even for the acceptor
  uint64_t highestPeerCallId = 0;
  kj::HashMap<uint64_t, PeerRoute*> routes;
  bool closed = false;
  kj::Maybe<kj::Exception> closeReason;
  kj::Maybe<kj::Exception> notServing;  // serve() was cancelled: call() and open() raise this
  uint32_t violations = 0;  // committed by the peer on this channel (PeerOptions::maxViolations)
  kj::Own<kj::PromiseFulfiller<void>> closedFulfiller;
  kj::ForkedPromise<void> closedPromise;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> drainWaiters;
  kj::Maybe<LossExplainer> explainer;

  void markClosed();

  void route(kj::Own<capnp::MessageReader> reader);
  void routeMalformed(capnp::MessageReader& reader, kj::StringPtr what);
  void startIncoming(uint64_t callId, kj::Own<capnp::MessageReader> reader);
  bool isOurs(uint64_t callId) const;
  bool wasUsed(uint64_t callId) const;
  void lose(const kj::Exception& why);
  void failRoutes(const kj::Exception& why);
};

// The handshake on a fresh channel (docs/PROTOCOL.md, "hello" and "authenticate"): each side sends
// its hello (identity, pid, protocol version, message limit, a fresh nonce) and reads the other's;
// then the opener proves it knows the host's tree secret, and only once that proof checks out does
// the acceptor prove it in turn (so a stranger who connects learns nothing it could use elsewhere).
// A peer speaking another version, sending anything but the handshake, or failing the proof is
// refused: it gets an `error`, the channel is closed, and this throws (AuthenticationFailed for a
// wrong or missing proof, after telling the host through PeerHost::authenticationFailed). The
// Peer's limit is the smaller of the two sides' limits.
Co<kj::Own<Peer>> handshake(kj::Own<Channel> channel, PeerHost& host, bool initiator,
                            PeerOptions options = {});

// The hello exchange on the socketpair between a parent and the child it spawns, trusted by
// construction: the parent made it and handed one end only to the child (as fd 3), so nobody else
// can be at either end, and no proof is exchanged (the child does not know the secret yet: the
// spawn spec brings it). The child calls handshakeWithParent, the parent handshakeWithChild.
// With PeerOptions::parentChildOverRelay (a Slurm step, whose channel is srun's relay) the proofs
// are exchanged and frames protected as on any channel: the child knows the secret beforehand.
Co<kj::Own<Peer>> handshakeWithParent(kj::Own<Channel> channel, PeerHost& host,
                                      PeerOptions options = {});
Co<kj::Own<Peer>> handshakeWithChild(kj::Own<Channel> channel, PeerHost& host,
                                     PeerOptions options = {});

// The authenticated handshake alone, on a channel that will carry no Peer of this actor's (the
// link to a node that runs this actor's remote children relays their channels:
// <harrow/spawn/link.h>). The same hellos and proofs as handshake(); the channel's frame limit is
// the agreed one afterwards. Returns the other side's identity.
Co<ActorIdentity> authenticateChannel(Channel& channel, PeerHost& host, bool initiator,
                                      PeerOptions options = {});

// Turns on the frame protection the two hellos agree on (docs/PROTOCOL.md, "Frame protection": tags
// or encryption, with keys from the secret and both hellos), as the handshake does once both proofs
// are through; nothing if both said none. For programs that speak the handshake by hand (tests,
// fuzzers): the opener calls it after it has read the acceptor's proof, the acceptor after it
// has sent its own. `binding`: PeerOptions::transportBinding.
void protectFrames(Channel& channel, const TreeSecret& secret, bool initiator,
                   wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                   kj::ArrayPtr<const kj::byte> binding = nullptr);

// A failed proof of the tree secret: "harrow.AuthenticationFailed: ...".
kj::Exception authenticationFailed(kj::StringPtr what);
bool isAuthenticationFailed(const kj::Exception& exception);

}  // namespace harrow
