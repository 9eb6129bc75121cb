#include "runtime/engine/internal/task_stream.h"

#include <kj/debug.h>

namespace harrow {

kj::Promise<void> Wakeup::wait() {
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiter = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

void Wakeup::wake() {
  KJ_IF_MAYBE(w, waiter) {
    (*w)->fulfill();
    waiter = nullptr;
  }
}

TaskStream::TaskStream(Peer& peer, uint64_t callId, uint32_t receiveWindow, kj::String task,
                       PeerRoute& route)
    : peer(peer), callId(callId), task(kj::mv(task)), sink(kj::refcounted<DecodeSink>(route)),
      receiveWindow(receiveWindow) {}

TaskStream::~TaskStream() noexcept(false) { sink->route = nullptr; }

void TaskStream::throwIfFailed() {
  KJ_IF_MAYBE(e, failure) {
    kj::throwFatalException(kj::cp(*e));
  }
}

void TaskStream::throwIfCannotSend() {
  throwIfFailed();  // the task's own failure says more than "closed"
  if (sendingClosed) {
    kj::throwFatalException(makeError(ErrorKind::STREAM_CLOSED,
        kj::str(task, " has ended: the other end takes no more items")));
  }
}

kj::Own<OutgoingMessage> TaskStream::newItem() {
  // Sized like the last item (items of a stream tend to be alike), with room to spare.
  capnp::uint words = lastItemWords == 0 ? FirstSegment::DEFAULT_WORDS
                                         : kj::max(lastItemWords + lastItemWords / 2, 16u);
  return kj::heap<WireOutgoing>(peer, callId, wire::Message::YIELD, task, words);
}

Co<void> TaskStream::send(kj::Own<OutgoingMessage> item) {
  KJ_REQUIRE(!stopped, "send() after stop()");
  // An item too large for the channel fails here, before it uses credit: the stream carries on.
  WireOutgoing& wire = asWire(*item);
  size_t bytes = peer.checkSize(wire);
  throwIfCannotSend();
  if (sendCredit == 0) peer.host().metrics().creditStall();
  while (sendCredit == 0) {
    throwIfCannotSend();
    co_await creditChanged.wait();  // the consumer is behind: wait, never buffer
  }
  throwIfCannotSend();
  --sendCredit;
  lastItemWords = bytes / sizeof(capnp::word);
  peer.send(WireOutgoing::release(kj::mv(item)));
  if (!peer.channel().isWritable()) co_await peer.whenWritable();
}

Co<kj::Maybe<kj::Own<IncomingMessage>>> TaskStream::receive() {
  while (inbox.empty() && !peerStopped) {
    throwIfFailed();
    co_await inboxChanged.wait();
  }
  if (inbox.empty()) {
    throwIfFailed();  // a stream that ended because the task failed raises that failure
    co_return nullptr;
  }
  kj::Own<IncomingMessage> item = kj::mv(inbox.front());
  inbox.pop_front();
  ++consumedSinceGrant;
  returnCredit(false);
  co_return kj::mv(item);
}

void TaskStream::returnCredit(bool now) {
  // In batches of half a window: one credit message per several items.
  if (consumedSinceGrant == 0 || peerStopped || peer.isClosed()) return;
  if (!now && consumedSinceGrant < kj::max(receiveWindow / 2, 1u)) return;
  auto [builder, root] = newMessage(callId);
  uint32_t growth = readingStopped ? 0 : windowGrowth();
  receiveWindow += growth;
  root.setCredit(consumedSinceGrant + growth);
  consumedSinceGrant = 0;
  peer.send(kj::mv(builder));
}

void TaskStream::stopReading() {
  if (readingStopped) return;
  readingStopped = true;
  consumedSinceGrant += inbox.size();
  inbox.clear();
  returnCredit(true);
}

Co<void> TaskStream::stop() {
  if (stopped) co_return;
  stopped = true;
  throwIfFailed();
  auto [builder, root] = newMessage(callId);
  root.setStop();
  peer.send(kj::mv(builder));
  co_return;
}

uint32_t TaskStream::windowGrowth() {
  const PeerOptions& options = peer.getOptions();
  if (receiveWindow >= options.maxWindow || receivedItems == 0) return 0;
  uint64_t averageBytes = kj::max(receivedBytes / receivedItems, uint64_t(1));
  uint64_t target = kj::min(uint64_t(options.maxWindow), options.windowBytes / averageBytes);
  if (target <= receiveWindow) return 0;
  // At most doubling per grant: the window follows the consumer's pace, not one burst.
  return kj::min(target - receiveWindow, uint64_t(receiveWindow));
}

void TaskStream::grantSendCredit(uint32_t credit) {
  sendCredit += credit;
  creditChanged.wake();
}

bool TaskStream::deliverItem(wire::Message::Reader message, kj::Own<capnp::MessageReader>& owner) {
  if (peerStopped) {
    peer.sendViolation(callId, "yield after stop");
    return false;
  }
  if (inbox.size() + consumedSinceGrant >= receiveWindow) {
    peer.sendViolation(callId, kj::str("yield beyond the credit window of ", receiveWindow));
    return false;
  }
  if (readingStopped) {  // nobody reads: dropped, and credited as if read
    ++consumedSinceGrant;
    returnCredit(false);
    return true;
  }
  ++receivedItems;
  for (unsigned id = 0;; ++id) {
    auto segment = owner->getSegment(id);
    if (segment == nullptr) break;
    receivedBytes += segment.size() * sizeof(capnp::word);
  }
  inbox.push_back(kj::heap<WireIncoming>(kj::mv(owner), message.getYield(), *sink));
  inboxChanged.wake();
  return true;
}

void TaskStream::deliverStop() {
  peerStopped = true;
  inboxChanged.wake();
}

void TaskStream::fail(const kj::Exception& why) {
  if (failure == nullptr) failure = kj::cp(why);
  wakeAll();
}

void TaskStream::closeSending() {
  sendingClosed = true;
  creditChanged.wake();
}

void TaskStream::wakeAll() {
  inboxChanged.wake();
  creditChanged.wake();
}

}  // namespace harrow
