#include <harrow/engine/auth.h>

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

// The MAC input: a domain label, the prover's role, then both hellos field by field, every
// variable-length field prefixed with its length, so no two transcripts encode alike.
class Transcript {
public:
  explicit Transcript(const TreeSecret& secret) {
    static_assert(TreeSecret::SIZE == crypto_auth_hmacsha512256_KEYBYTES);
    crypto_auth_hmacsha512256_init(&state, secret.bytes().begin(), secret.bytes().size());
  }
  ~Transcript() { sodium_memzero(&state, sizeof(state)); }
  KJ_DISALLOW_COPY(Transcript);

  void add(kj::ArrayPtr<const kj::byte> bytes) {
    addNumber(bytes.size());
    crypto_auth_hmacsha512256_update(&state, bytes.begin(), bytes.size());
  }
  void addNumber(uint64_t n) {
    kj::byte le[8];
    for (int i = 0; i < 8; ++i) le[i] = kj::byte(n >> (8 * i));
    crypto_auth_hmacsha512256_update(&state, le, sizeof(le));
  }
  void addHello(wire::Hello::Reader hello) {
    add(hello.getId().getName().asBytes());
    add(hello.getId().getUuid());
    addNumber(hello.getPid());
    addNumber(hello.getProtocolVersion());
    add(hello.getNonce());
  }
  kj::Array<kj::byte> finish() {
    auto mac = kj::heapArray<kj::byte>(crypto_auth_hmacsha512256_BYTES);
    crypto_auth_hmacsha512256_final(&state, mac.begin());
    return mac;
  }

private:
  crypto_auth_hmacsha512256_state state;
};

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
                                   wire::Hello::Reader opener, wire::Hello::Reader acceptor) {
  initSodium();
  Transcript transcript(secret);
  transcript.add("harrow handshake proof v1"_kj.asBytes());
  transcript.add(prover == HandshakeRole::OPENER ? "opener"_kj.asBytes()
                                                 : "acceptor"_kj.asBytes());
  transcript.addHello(opener);
  transcript.addHello(acceptor);
  return transcript.finish();
}

bool verifyHandshakeProof(const TreeSecret& secret, HandshakeRole prover,
                          wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                          kj::ArrayPtr<const kj::byte> proof) {
  auto expected = handshakeProof(secret, prover, opener, acceptor);
  return proof.size() == expected.size() &&
         sodium_memcmp(proof.begin(), expected.begin(), expected.size()) == 0;
}

}  // namespace harrow
