// FrameSeal: the tag (and, optionally, the encryption) of every frame one side of a channel sends
// or receives after the handshake (docs/PROTOCOL.md, "Frame protection").
//
//   FrameSeal out(keys->openerToAcceptor, FrameSeal::AUTHENTICATE);   // the sender's
//   FrameSeal in(keys->openerToAcceptor, FrameSeal::AUTHENTICATE);    // the receiver's twin
//   out.tag(pieces, tag);                  // frame N: a 16-byte tag over its bytes
//   bool good = in.open(frame, tableBytes, tag);  // frame N again: false if anything differs
//
// Guarantees: each direction of a channel has its own key (derived in the handshake,
// <harrow/engine/auth.h>) and counts its frames; frame N is sealed with N as its nonce, so a
// frame injected, dropped, reordered, replayed or modified on the way fails open(), and so does
// every frame after it. With ENCRYPT the segments travel encrypted as well (the segment table
// stays readable, so the receiver can find the frame's end, and is covered by the tag).
//
// The construction is XChaCha20-Poly1305 (libsodium's crypto_aead_xchacha20poly1305_ietf) with
// the nonce 16 zero bytes | the frame number (64-bit little-endian): AUTHENTICATE seals an empty
// message with the whole frame as associated data, ENCRYPT the segments with the segment table as
// associated data. It is written out with the primitives (hchacha20 once per direction, then
// chacha20 and poly1305 per frame) because a frame arrives in pieces (the table, each segment)
// that the one-shot AEAD would need copied together first; tests check it against the AEAD.
// (The counter nonce is safe because every key serves one direction of one channel only.)

#pragma once

#include <kj/array.h>
#include <kj/common.h>

#include <stdint.h>

namespace harrow {

class FrameSeal {
public:
  static constexpr size_t KEY_BYTES = 32;
  static constexpr size_t TAG_BYTES = 16;
  enum Mode { AUTHENTICATE, ENCRYPT };

  FrameSeal(kj::ArrayPtr<const kj::byte> key, Mode mode);
  ~FrameSeal() noexcept;
  KJ_DISALLOW_COPY(FrameSeal);

  Mode mode() const { return sealMode; }
  // Frames sealed or opened so far: the next one's number.
  uint64_t frames() const { return counter; }

  // AUTHENTICATE: the tag of the next frame, whose bytes are `pieces` back to back.
  void tag(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, kj::byte* tagOut);
  // ENCRYPT: encrypts the next frame's segments in place (`frame` is the table of `tableBytes`,
  // then the segments) and writes its tag.
  void seal(kj::ArrayPtr<kj::byte> frame, size_t tableBytes, kj::byte* tagOut);
  // The receiver's side of either: checks the next frame against `tag` (constant time) and, with
  // ENCRYPT, decrypts its segments in place. False (and nothing decrypted) if it does not check
  // out; the seal is then unusable (the stream is no longer trustworthy).
  bool open(kj::ArrayPtr<kj::byte> frame, size_t tableBytes, const kj::byte* tag);

private:
  kj::byte subkey[KEY_BYTES];
  Mode sealMode;
  uint64_t counter = 0;
  bool failed = false;
};

}  // namespace harrow
