#include <harrow/engine/auth.h>

#include <capnp/message.h>
#include <kj/debug.h>

#include <sodium.h>

#include <string.h>

namespace harrow {

namespace {

void initSodium() {
  // Idempotent and thread-safe; it picks the fastest implementations and seeds nothing we rely on
  // (randombytes_buf reads getrandom()).
  static const bool ready = []() {
    KJ_ASSERT(sodium_init() >= 0, "libsodium failed to initialise");
    return true;
  }();
  (void)ready;
}

// A MAC input or hash input: every variable-length field prefixed with its length, so no two
// transcripts encode alike. `State` is HMAC-SHA512-256 (the proofs) or BLAKE2b (digest, keys).
template <typename Ops>
class Transcript {
public:
  template <typename... Key>
  explicit Transcript(Key&&... key) { Ops::init(state, key...); }
  ~Transcript() { sodium_memzero(&state, sizeof(state)); }
  KJ_DISALLOW_COPY(Transcript);

  void add(kj::ArrayPtr<const kj::byte> bytes) {
    addNumber(bytes.size());
    Ops::update(state, bytes.begin(), bytes.size());
  }
  void addNumber(uint64_t n) {
    kj::byte le[8];
    for (int i = 0; i < 8; ++i) le[i] = kj::byte(n >> (8 * i));
    Ops::update(state, le, sizeof(le));
  }
  void finish(kj::byte* out) { Ops::final(state, out); }

private:
  typename Ops::State state;
};

struct Hmac {
  using State = crypto_auth_hmacsha512256_state;
  static constexpr size_t BYTES = crypto_auth_hmacsha512256_BYTES;
  static void init(State& s, const TreeSecret& secret) {
    static_assert(TreeSecret::SIZE == crypto_auth_hmacsha512256_KEYBYTES);
    crypto_auth_hmacsha512256_init(&s, secret.bytes().begin(), secret.bytes().size());
  }
  static void update(State& s, const kj::byte* p, size_t n) {
    crypto_auth_hmacsha512256_update(&s, p, n);
  }
  static void final(State& s, kj::byte* out) { crypto_auth_hmacsha512256_final(&s, out); }
};

struct Blake2b {
  using State = crypto_generichash_state;
  static constexpr size_t BYTES = 32;
  static void init(State& s) { crypto_generichash_init(&s, nullptr, 0, BYTES); }
  static void init(State& s, const TreeSecret& secret) {
    crypto_generichash_init(&s, secret.bytes().begin(), secret.bytes().size(), BYTES);
  }
  static void update(State& s, const kj::byte* p, size_t n) {
    crypto_generichash_update(&s, p, n);
  }
  static void final(State& s, kj::byte* out) { crypto_generichash_final(&s, out, BYTES); }
};

// What both sides agreed on in the handshake, as one digest: both hellos whole (every field,
// including ones this version does not know, in capnp's canonical form, so both sides encode
// them alike) and the transport's binding.
struct Digest {
  kj::byte bytes[Blake2b::BYTES];
};
Digest transcriptDigest(wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                        kj::ArrayPtr<const kj::byte> binding) {
  initSodium();
  Transcript<Blake2b> transcript;
  transcript.add("harrow handshake transcript v2"_kj.asBytes());
  transcript.add(capnp::canonicalize(opener).asBytes());
  transcript.add(capnp::canonicalize(acceptor).asBytes());
  transcript.add(binding);
  Digest digest;
  transcript.finish(digest.bytes);
  return digest;
}

}  // namespace

TreeSecret::TreeSecret() { memset(key, 0, SIZE); }

TreeSecret::TreeSecret(TreeSecret&& other) noexcept {
  memcpy(key, other.key, SIZE);
  sodium_memzero(other.key, SIZE);
}

TreeSecret& TreeSecret::operator=(TreeSecret&& other) noexcept {
  if (this != &other) {
    memcpy(key, other.key, SIZE);
    sodium_memzero(other.key, SIZE);
  }
  return *this;
}

TreeSecret::~TreeSecret() noexcept { sodium_memzero(key, SIZE); }

TreeSecret TreeSecret::clone() const {
  TreeSecret copy;
  memcpy(copy.key, key, SIZE);
  return copy;
}

TreeSecret TreeSecret::random() {
  initSodium();
  TreeSecret secret;
  randombytes_buf(secret.key, SIZE);
  return secret;
}

TreeSecret TreeSecret::fromCookie(kj::ArrayPtr<const kj::byte> cookie) {
  KJ_REQUIRE(cookie.size() >= 16, "a cookie must have at least 16 bytes", cookie.size());
  initSodium();
  TreeSecret secret;
  static_assert(SIZE >= crypto_generichash_BYTES_MIN && SIZE <= crypto_generichash_BYTES_MAX);
  crypto_generichash(secret.key, SIZE, cookie.begin(), cookie.size(), nullptr, 0);
  return secret;
}

TreeSecret TreeSecret::fromBytes(kj::ArrayPtr<const kj::byte> bytes) {
  KJ_REQUIRE(bytes.size() == SIZE, "a tree secret has 32 bytes", bytes.size());
  TreeSecret secret;
  memcpy(secret.key, bytes.begin(), SIZE);
  return secret;
}

void setHelloNonce(wire::Hello::Builder hello) {
  initSodium();
  auto nonce = hello.initNonce(HELLO_NONCE_SIZE);
  randombytes_buf(nonce.begin(), nonce.size());
}

kj::Array<kj::byte> handshakeProof(const TreeSecret& secret, HandshakeRole prover,
                                   wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                                   kj::ArrayPtr<const kj::byte> binding) {
  auto digest = transcriptDigest(opener, acceptor, binding);
  Transcript<Hmac> transcript(secret);
  transcript.add("harrow handshake proof v2"_kj.asBytes());
  transcript.add(prover == HandshakeRole::OPENER ? "opener"_kj.asBytes()
                                                 : "acceptor"_kj.asBytes());
  transcript.add(kj::arrayPtr(digest.bytes, sizeof(digest.bytes)));
  auto mac = kj::heapArray<kj::byte>(Hmac::BYTES);
  transcript.finish(mac.begin());
  return mac;
}

bool verifyHandshakeProof(const TreeSecret& secret, HandshakeRole prover,
                          wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                          kj::ArrayPtr<const kj::byte> proof,
                          kj::ArrayPtr<const kj::byte> binding) {
  auto expected = handshakeProof(secret, prover, opener, acceptor, binding);
  return proof.size() == expected.size() &&
         sodium_memcmp(proof.begin(), expected.begin(), expected.size()) == 0;
}

FrameKeys::~FrameKeys() noexcept {
  sodium_memzero(openerToAcceptor, SIZE);
  sodium_memzero(acceptorToOpener, SIZE);
}

kj::Own<FrameKeys> frameKeys(const TreeSecret& secret, wire::Hello::Reader opener,
                             wire::Hello::Reader acceptor, kj::ArrayPtr<const kj::byte> binding) {
  auto digest = transcriptDigest(opener, acceptor, binding);
  auto keys = kj::heap<FrameKeys>();
  auto derive = [&](kj::StringPtr direction, kj::byte* out) {
    Transcript<Blake2b> transcript(secret);
    transcript.add("harrow frame key v1"_kj.asBytes());
    transcript.add(direction.asBytes());
    transcript.add(kj::arrayPtr(digest.bytes, sizeof(digest.bytes)));
    transcript.finish(out);
  };
  static_assert(FrameKeys::SIZE == Blake2b::BYTES);
  derive("opener to acceptor", keys->openerToAcceptor);
  derive("acceptor to opener", keys->acceptorToOpener);
  return keys;
}

}  // namespace harrow
