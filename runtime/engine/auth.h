// Authenticating peers: the secret a tree of actors shares, the proofs of knowing it that the
// hello exchange carries, and the keys that protect every frame after it (docs/PROTOCOL.md,
// "authenticate", "Frame protection" and "Threat model").
//
// Every channel but the one between a parent and the child it spawned is authenticated: each
// side sends a fresh nonce in its hello, then a MAC keyed with the tree's secret over the
// handshake transcript (both whole hellos, in canonical form, and what the transport binds the
// channel to) and the role of the prover, so a proof is good for one channel, one direction and
// one pair of actors only, and no field of either hello can be changed on the way. The secret
// never travels on such a channel. From the same transcript both sides derive one key per
// direction (frameKeys()): what tags (or encrypts) every later frame on a channel that is not a
// same-user Unix socket (<harrow/ipc/frame_seal.h>).
//
// The MAC is libsodium's crypto_auth_hmacsha512256; the transcript digest and the keys are
// BLAKE2b-256 (crypto_generichash, keyed with the secret for the keys); the nonces come from
// randombytes_buf.

#pragma once

#include <harrow/wire.capnp.h>

#include <kj/array.h>
#include <kj/common.h>
#include <kj/string.h>

namespace harrow {

// 32 secret bytes, wiped when dropped. Move-only; clone() copies on purpose.
class TreeSecret {
public:
  static constexpr size_t SIZE = 32;

  // Fresh random bytes.
  static TreeSecret random();
  // A cookie's text (any length >= 16 bytes, e.g. 64 hex digits) made a key: BLAKE2b-256 of it,
  // so any cookie a user writes gives a uniformly random-looking key.
  static TreeSecret fromCookie(kj::ArrayPtr<const kj::byte> cookie);
  // Exactly SIZE bytes, as a parent sends them in the spawn spec; throws otherwise.
  static TreeSecret fromBytes(kj::ArrayPtr<const kj::byte> bytes);

  TreeSecret(TreeSecret&& other) noexcept;
  TreeSecret& operator=(TreeSecret&& other) noexcept;
  ~TreeSecret() noexcept;
  KJ_DISALLOW_COPY(TreeSecret);

  TreeSecret clone() const;
  kj::ArrayPtr<const kj::byte> bytes() const { return kj::arrayPtr(key, SIZE); }

private:
  TreeSecret();
  kj::byte key[SIZE];
};

// Fills a hello's nonce with fresh random bytes.
void setHelloNonce(wire::Hello::Builder hello);

// Nonces shorter than this are refused (the peer's challenge would be guessable).
constexpr size_t HELLO_NONCE_SIZE = 32;

enum class HandshakeRole { OPENER, ACCEPTOR };

// The proof the side in `prover`'s role sends: the MAC over the transcript. `opener` and
// `acceptor` are the hellos the opener and the acceptor of the channel sent; `binding` is what
// the transport binds the channel to (over TLS: both certificates' fingerprints), empty if
// nothing.
kj::Array<kj::byte> handshakeProof(const TreeSecret& secret, HandshakeRole prover,
                                   wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                                   kj::ArrayPtr<const kj::byte> binding = nullptr);

// Whether `proof` is the proof `prover` owes (compared in constant time).
bool verifyHandshakeProof(const TreeSecret& secret, HandshakeRole prover,
                          wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                          kj::ArrayPtr<const kj::byte> proof,
                          kj::ArrayPtr<const kj::byte> binding = nullptr);

// The two keys of a channel's frames, one per direction, derived from the tree secret and the
// same transcript as the proofs: fresh for every channel (both nonces), never sent. Wiped when
// dropped.
struct FrameKeys {
  static constexpr size_t SIZE = 32;
  kj::byte openerToAcceptor[SIZE];
  kj::byte acceptorToOpener[SIZE];
  FrameKeys() = default;
  ~FrameKeys() noexcept;
  KJ_DISALLOW_COPY(FrameKeys);
};
kj::Own<FrameKeys> frameKeys(const TreeSecret& secret, wire::Hello::Reader opener,
                             wire::Hello::Reader acceptor,
                             kj::ArrayPtr<const kj::byte> binding = nullptr);

}  // namespace harrow
