#include <harrow/typed/task.h>

#include <harrow/co/errors.h>

namespace harrow {

RawPortal::~RawPortal() noexcept(false) {
  KJ_IF_MAYBE(anchor, anchor_) (*anchor)->release();
}

kj::Own<PortalAnchor> RawPortal::anchor() {
  KJ_IF_MAYBE(existing, anchor_) return kj::addRef(**existing);
  auto fresh = kj::refcounted<PortalAnchor>(*this);
  auto ref = kj::addRef(*fresh);
  anchor_ = kj::mv(fresh);
  return ref;
}

RawPortal& PortalAnchor::get() const {
  if (portal == nullptr) {
    kj::throwFatalException(makeError(ErrorKind::TRANSPORT_CLOSED,
        "this portal's channel is gone: the actor nursery that started the actor has closed, "
        "or the actor that found it has stopped serving"));
  }
  return *portal;
}

}  // namespace harrow
