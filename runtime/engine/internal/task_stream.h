// The item stream of one task, shared by both ends' task objects: an inbox that grants credit
// back as its consumer takes items, and a sender that waits for the peer's credit.

#pragma once

#include "runtime/engine/internal/wire_message.h"

#include <deque>

namespace harrow {

// Start.timeoutNanos beyond this (about 146 years) is no deadline: it keeps the callee's
// TimePoint arithmetic in range whatever a peer sends.
constexpr uint64_t MAX_TIMEOUT_NANOS = uint64_t(1) << 62;

// A re-armable wake-up for one waiting coroutine.
class Wakeup {
public:
  kj::Promise<void> wait();
  void wake();

private:
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> waiter;
};

class TaskStream {
public:
  // `task` describes the task in error messages, e.g. "the context Store.session to actor 'x'".
  // `route`: the task's route; it hears of received payloads that fail their decode check
  // (DecodeSink) for as long as this stream exists.
  TaskStream(Peer& peer, uint64_t callId, uint32_t receiveWindow, kj::String task,
             PeerRoute& route);
  ~TaskStream() noexcept(false);
  KJ_DISALLOW_COPY(TaskStream);

  DecodeSink& decodeSink() { return *sink; }

  // --- RawStream, forwarded by the task classes ---
  kj::Own<OutgoingMessage> newItem();
  Co<void> send(kj::Own<OutgoingMessage> item);
  Co<kj::Maybe<kj::Own<IncomingMessage>>> receive();
  Co<void> stop();

  // --- fed by the task's route ---
  void grantSendCredit(uint32_t credit);
  // Returns false (after reporting a violation) if the item exceeds the credit we granted.
  bool deliverItem(wire::Message::Reader message, kj::Own<capnp::MessageReader>& owner);
  void deliverStop();
  // Everything waiting or arriving later fails with `why`.
  void fail(const kj::Exception& why);
  // The other end has ended: send() (waiting or later) raises harrow.StreamClosed; receiving is
  // unaffected (what arrived before is still read, then the stream ends).
  void closeSending();
  // RawStream::stopReading(): what arrives from now on is dropped and credited at once.
  void stopReading();
  bool failed() const { return failure != nullptr; }
  // No credit left to send items: the peer is not taking them (Peer::tasks() says so).
  bool outOfCredit() const { return sendCredit == 0; }
  void wakeAll();

  Peer& peer;
  const uint64_t callId;
  const kj::String task;

private:
  kj::Own<DecodeSink> sink;
  uint32_t receiveWindow;         // grows, see PeerOptions::maxWindow
  uint32_t consumedSinceGrant = 0;
  uint64_t receivedItems = 0;     // for the average item size
  uint64_t receivedBytes = 0;
  std::deque<kj::Own<IncomingMessage>> inbox;
  bool peerStopped = false;
  uint32_t sendCredit = 0;
  capnp::uint lastItemWords = 0;  // the size of the last item sent (newItem())
  bool stopped = false;
  kj::Maybe<kj::Exception> failure;
  bool sendingClosed = false;
  bool readingStopped = false;
  Wakeup inboxChanged;
  Wakeup creditChanged;

  void throwIfFailed();
  void throwIfCannotSend();
  // How many items to grant beyond those consumed, growing the window.
  uint32_t windowGrowth();
  // Returns the credit of consumed items to the peer once half a window has been consumed (or
  // any, with `now`).
  void returnCredit(bool now);
};

}  // namespace harrow
