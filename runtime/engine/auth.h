// Authenticating peers: the secret a tree of actors shares, and the proofs of knowing it that
// the hello exchange carries (docs/PROTOCOL.md 2.2, "Threat model" in section 7).
//
// Every channel but the one between a parent and the child it spawned is authenticated: each
// side sends a fresh nonce in its hello, then a MAC keyed with the tree's secret over both hellos
// (names, uuids, pids, versions, nonces) and the role of the prover, so a proof is good for one
// channel, one direction and one pair of actors only. The secret never travels on such a channel.
//
// The MAC is libsodium's crypto_auth_hmacsha512256; the nonces come from randombytes_buf.

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

// The proof the side in `prover`'s role sends: the MAC over both hellos. `opener` and `acceptor`
// are the hellos the opener and the acceptor of the channel sent.
kj::Array<kj::byte> handshakeProof(const TreeSecret& secret, HandshakeRole prover,
                                   wire::Hello::Reader opener, wire::Hello::Reader acceptor);

// Whether `proof` is the proof `prover` owes (compared in constant time).
bool verifyHandshakeProof(const TreeSecret& secret, HandshakeRole prover,
                          wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                          kj::ArrayPtr<const kj::byte> proof);

}  // namespace harrow
