// In-memory stand-ins for the engine's task interfaces (runtime/task.h), enough to drive
// generated portals and servers without a channel: every message is a MallocMessageBuilder.

#pragma once

#include <harrow/typed/typed.h>

#include <capnp/message.h>
#include <kj/debug.h>
#include <kj/function.h>
#include <kj/vector.h>

#include <string>

namespace harrow::codegen_test {

class FakeOutgoing final : public OutgoingMessage {
public:
  capnp::MallocMessageBuilder message;
  uint64_t typeId = 0;

  capnp::AnyPointer::Builder payload() override { return message.getRoot<capnp::AnyPointer>(); }
  void setTypeId(uint64_t id) override { typeId = id; }

  template <typename T>
  typename T::Reader as() {
    KJ_REQUIRE(typeId == capnp::typeId<T>(), "payload of another type");
    return payload().asReader().getAs<T>();
  }
};

class FakeIncoming final : public IncomingMessage {
public:
  capnp::MallocMessageBuilder message;
  uint64_t typeId = 0;

  capnp::AnyPointer::Reader payload() override {
    return message.getRoot<capnp::AnyPointer>().asReader();
  }
  void check(capnp::StructSchema expected) override {
    KJ_REQUIRE(expected.getProto().getId() == typeId, "payload of another type",
               expected.getProto().getDisplayName(), typeId);
  }
};

// A received message of type T, built by `fill(T::Builder)`.
template <typename T, typename Fill>
kj::Own<FakeIncoming> incoming(Fill&& fill) {
  auto message = kj::heap<FakeIncoming>();
  message->typeId = capnp::typeId<T>();
  fill(message->message.getRoot<capnp::AnyPointer>().initAs<T>());
  return message;
}

// Records what a portal sends; answers calls with `reply`, and refuses to open streams and
// contexts (after recording their start).
class FakePortal final : public RawPortal {
public:
  uint64_t interfaceId = 0;
  uint16_t methodId = 0;
  kj::Maybe<MethodKind> openedKind;
  kj::Own<OutgoingMessage> start;  // the last start message sent
  kj::Function<kj::Own<IncomingMessage>(FakeOutgoing& start)> reply;

  FakeOutgoing& lastStart() { return kj::downcast<FakeOutgoing>(*start); }

  kj::Own<OutgoingMessage> newStart(uint64_t interfaceId, uint16_t methodId) override {
    this->interfaceId = interfaceId;
    this->methodId = methodId;
    return kj::heap<FakeOutgoing>();
  }
  Co<kj::Own<IncomingMessage>> call(kj::Own<OutgoingMessage> start) override {
    this->start = kj::mv(start);
    return kj::Promise<kj::Own<IncomingMessage>>(reply(lastStart()));
  }
  Co<kj::Own<OutgoingTask>> open(kj::Own<OutgoingMessage> start, MethodKind kind) override {
    this->start = kj::mv(start);
    openedKind = kind;
    return kj::Promise<kj::Own<OutgoingTask>>(KJ_EXCEPTION(FAILED, "FakePortal opens nothing"));
  }
};

// One incoming task: params given up front; records results, started, items and stop. The peer
// sends no items (receive() ends at once).
class FakeTask final : public IncomingTask {
public:
  FakeTask(MethodKind kind, kj::Own<FakeIncoming> params) : kind_(kind), params_(kj::mv(params)) {}

  FakeOutgoing resultsMessage;
  kj::Maybe<kj::Own<OutgoingMessage>> startedMessage;
  kj::Vector<kj::Own<OutgoingMessage>> items;
  bool stopped = false;
  bool cancelled = false;

  template <typename T>
  typename T::Reader item(size_t i) { return kj::downcast<FakeOutgoing>(*items[i]).as<T>(); }
  template <typename T>
  typename T::Reader started() {
    KJ_IF_MAYBE(message, startedMessage) {
      return kj::downcast<FakeOutgoing>(**message).as<T>();
    }
    KJ_FAIL_REQUIRE("nothing started");
  }

  // RawStream
  kj::Own<OutgoingMessage> newItem() override { return kj::heap<FakeOutgoing>(); }
  Co<void> send(kj::Own<OutgoingMessage> item) override {
    items.add(kj::mv(item));
    return kj::Promise<void>(kj::READY_NOW);
  }
  Co<kj::Maybe<kj::Own<IncomingMessage>>> receive() override {
    return kj::Promise<kj::Maybe<kj::Own<IncomingMessage>>>(kj::Maybe<kj::Own<IncomingMessage>>());
  }
  Co<void> stop() override {
    stopped = true;
    return kj::Promise<void>(kj::READY_NOW);
  }

  // IncomingTask
  IncomingMessage& params() override { return *params_; }
  MethodKind kind() override { return kind_; }
  OutgoingMessage& results() override { return resultsMessage; }
  kj::Own<OutgoingMessage> newStarted() override { return kj::heap<FakeOutgoing>(); }
  Co<void> sendStarted(kj::Own<OutgoingMessage> started) override {
    startedMessage = kj::mv(started);
    return kj::Promise<void>(kj::READY_NOW);
  }
  void cancel() override { cancelled = true; }

private:
  MethodKind kind_;
  kj::Own<FakeIncoming> params_;
};

// The description of the exception a promise rejects with; "" if it resolves.
template <typename T>
std::string failureOf(kj::Promise<T> promise, kj::WaitScope& waitScope) {
  try {
    promise.wait(waitScope);
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "";
}

}  // namespace harrow::codegen_test
