// A parallel word indexer: a pool of worker actors counts the words of a directory of files, and
// the root merges their counts as they stream in and prints the most frequent words.
//
//   bazel run //examples/indexer                       200 generated files, 3 workers
//   bazel run //examples/indexer -- --files=1000 --workers=4 --top=20 --harrow-metrics=127.0.0.1:9464
//
// What it shows, as a real job would need it:
//  - Its own input: --files text files of --words words each (a Zipf-like vocabulary, the same
//    for the same --seed) in a fresh temporary directory (or --dir=PATH, kept), plus one poison
//    file: a binary file with a NUL byte that the workers' tokenizer was never meant to see and
//    crashes on (abort(): the process dies, as a real parser bug would take it).
//  - A worker pool (harrow::openWorkerPool, runtime/spawn/worker_pool.h): --workers actors, each
//    fed files through one context in a pipeline; their results come back as a stream
//    (pool.mapUnordered) and are merged as they arrive.
//  - The supervisor restarting a crashed worker: the worker that took the poison file dies; the
//    pool's supervisor starts a new instance and the files it had in flight are sent again, each
//    alone, until the poison file is known; it is tried once more (OnWorkerLoss::RETRY, 2
//    attempts), then reported: "poison.bin: not indexed: ...". Every other file is indexed.
//  - A deadline on the whole job (--deadline-ms, harrow::failAfter): past it the job is cancelled,
//    every worker stopped and reaped, and the program fails with harrow.DeadlineExceeded
//    (--slow-ms=N makes each file take N ms, to see it).
//  - Metrics: with --harrow-metrics=HOST:PORT every actor counts and the root serves the tree's
//    metrics at http://HOST:PORT/metrics while the job runs; at the end the program reads the same
//    numbers (harrow::collectTree) and prints the workers' index contexts and restarts.
//  - A progress line on the terminal (stderr): files done, words, failures, restarts, time.
//
// A word is a maximal run of ASCII letters, lowercased; the top words are ordered by count, then
// alphabetically. The example's test counts the same files directly (python3) and compares.

#include <harrow/harrow.h>
#include "examples/indexer/indexer.capnp.harrow.h"

#include <kj/debug.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using harrow::Co;

// ---------------------------------------------------------------------------------------------
// The worker (runs in each child process)

class IndexerImpl final : public IndexerActor::Server {
public:
  Co<void> index(IndexCall call) override {
    co_await harrow::serveItems(call, [](Indexer::File::Reader file, Indexer::Counts::Builder out) {
      if (file.getSlowMillis() > 0) usleep(file.getSlowMillis() * 1000);
      std::ifstream in(file.getPath().cStr(), std::ios::binary);
      KJ_REQUIRE(in.good(), "cannot read the file", file.getPath());
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (text.find('\0') != std::string::npos) {
        // The bug this example needs: a tokenizer that assumes text, on a binary file.
        fprintf(stderr, "indexer worker %d: a NUL byte in %s: the tokenizer crashes\n", getpid(),
                file.getPath().cStr());
        abort();
      }
      std::unordered_map<std::string, uint32_t> counts;
      uint64_t total = 0;
      std::string word;
      for (size_t i = 0; i <= text.size(); ++i) {
        char c = i < text.size() ? text[i] : ' ';
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
          word += char(c | 0x20);
        } else if (!word.empty()) {
          ++counts[word];
          ++total;
          word.clear();
        }
      }
      auto words = out.initWords(counts.size());
      size_t i = 0;
      for (auto& [w, n] : counts) {
        words[i].setWord(w);
        words[i].setCount(n);
        ++i;
      }
      out.setTotal(total);
    });
  }
};

// ---------------------------------------------------------------------------------------------
// Flags and input

struct Flags {
  uint32_t files = 200;
  uint32_t workers = 3;
  uint32_t words = 3000;  // per file
  uint32_t top = 10;
  uint32_t deadlineMs = 60000;
  uint32_t slowMs = 0;
  uint32_t seed = 1;
  std::string dir;  // empty: a temporary directory, removed at the end
};

Flags parseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    auto number = [&](kj::StringPtr name, uint32_t& into) {
      auto prefix = kj::str("--", name, "=");
      if (arg.startsWith(prefix)) into = uint32_t(strtoul(arg.slice(prefix.size()).cStr(), nullptr, 10));
    };
    number("files", flags.files);
    number("workers", flags.workers);
    number("words", flags.words);
    number("top", flags.top);
    number("deadline-ms", flags.deadlineMs);
    number("slow-ms", flags.slowMs);
    number("seed", flags.seed);
    if (arg.startsWith("--dir=")) flags.dir = arg.slice(6).cStr();
  }
  return flags;
}

// A vocabulary of made-up words, most frequent first.
std::vector<std::string> vocabulary(std::mt19937_64& random, size_t size) {
  static const char* const SYLLABLES[] = {"ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve",
                                          "dan", "el", "or", "qui", "zu", "ba", "fen", "gri", "ho"};
  constexpr size_t COUNT = sizeof(SYLLABLES) / sizeof(SYLLABLES[0]);
  std::vector<std::string> words;
  std::unordered_map<std::string, bool> seen;
  while (words.size() < size) {
    std::string word;
    size_t syllables = 1 + random() % 3;
    for (size_t i = 0; i < syllables; ++i) word += SYLLABLES[random() % COUNT];
    if (!seen[word]) {
      seen[word] = true;
      words.push_back(word);
    }
  }
  return words;
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  KJ_REQUIRE(out.good(), "cannot write", path.c_str());
}

// Writes the corpus into `dir`; returns the paths, the poison file among them.
std::vector<std::string> generate(const Flags& flags, const std::string& dir) {
  std::mt19937_64 random(flags.seed);
  auto words = vocabulary(random, 1500);
  std::vector<double> weights;
  for (size_t rank = 0; rank < words.size(); ++rank) weights.push_back(1.0 / double(rank + 1));
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  std::vector<std::string> paths;
  for (uint32_t f = 0; f < flags.files; ++f) {
    std::string text;
    for (uint32_t w = 0, inSentence = 0; w < flags.words; ++w, ++inSentence) {
      std::string word = words[pick(random)];
      if (inSentence == 0) word[0] = char(word[0] - 'a' + 'A');
      text += word;
      if (inSentence >= 6 && random() % 8 == 0) {
        text += random() % 4 == 0 ? ".\n" : ". ";
        inSentence = uint32_t(-1);
      } else {
        text += random() % 12 == 0 ? ", " : " ";
      }
    }
    char name[32];
    snprintf(name, sizeof(name), "/doc-%04u.txt", f);
    paths.push_back(dir + name);
    writeFile(paths.back(), text);
  }
  std::string poison = "Quarterly figures follow ";
  poison += '\0';
  poison += "\x7f\x45\x4c\x46 binary data the indexer should never have been given";
  // In the middle of the list, as a stray file in a real directory would be.
  auto at = paths.begin() + ptrdiff_t(paths.size() / 2);
  at = paths.insert(at, dir + "/poison.bin");
  writeFile(*at, poison);
  return paths;
}

// ---------------------------------------------------------------------------------------------
// Progress (stderr): one line rewritten in place on a terminal, a line per quarter otherwise.

class Progress {
public:
  explicit Progress(size_t total) : total(total), tty(isatty(2)) {}

  // `last`: the job is over; the line is shown once more, finished.
  void update(size_t done, uint64_t words, size_t failed, uint32_t restarts, bool last = false) {
    auto now = std::chrono::steady_clock::now();
    if (tty) {
      if (!last && now - shown < std::chrono::milliseconds(100)) return;
    } else {
      size_t quarter = total == 0 ? 4 : done * 4 / total;
      if (last ? done == shownDone : quarter == shownQuarter) return;
      shownQuarter = quarter;
    }
    shown = now;
    shownDone = done;
    double seconds = std::chrono::duration<double>(now - begun).count();
    fprintf(stderr, "%sindexed %zu/%zu files, %llu words, %zu failed, %u restarts, %.1f s%s",
            tty ? "\r" : "", done, total, (unsigned long long)words, failed, restarts, seconds,
            tty && !last ? "  " : "\n");
    fflush(stderr);
    onLine = tty && !last;
  }

  // Before another line is printed: the progress line, if one is open on the terminal, ends.
  void interrupt() {
    if (!onLine) return;
    fprintf(stderr, "\n");
    fflush(stderr);
    onLine = false;
  }

private:
  size_t total;
  bool tty;
  bool onLine = false;
  std::chrono::steady_clock::time_point begun = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point shown{};
  size_t shownQuarter = 0;
  size_t shownDone = 0;
};

// The sum of the samples of `family` whose labels contain `filter`, in Prometheus text.
double sumOf(kj::StringPtr exposition, kj::StringPtr family, kj::StringPtr filter) {
  double sum = 0;
  std::istringstream lines(exposition.cStr());
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(std::string(family.cStr()) + "{", 0) != 0) continue;
    if (line.find(filter.cStr()) == std::string::npos) continue;
    sum += strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
  }
  return sum;
}

void removeCorpus(const std::string& dir, const std::vector<std::string>& paths) {
  for (auto& path : paths) unlink(path.c_str());
  rmdir(dir.c_str());
}

// ---------------------------------------------------------------------------------------------
// The root

Co<void> run(harrow::Actor& root, const Flags& flags) {
  std::string dir = flags.dir;
  bool temporary = dir.empty();
  if (temporary) {
    const char* tmp = getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/harrow-indexer-XXXXXX";
    KJ_REQUIRE(mkdtemp(pattern.data()) != nullptr, "mkdtemp failed", pattern.c_str());
    dir = pattern;
  } else {
    mkdir(dir.c_str(), 0755);
  }
  auto paths = generate(flags, dir);
  KJ_DEFER(if (temporary) removeCorpus(dir, paths));
  printf("indexer (pid %d): %u files of %u words and one poison file in %s; %u workers; "
         "deadline %u ms\n", getpid(), flags.files, flags.words, dir.c_str(), flags.workers,
         flags.deadlineMs);
  fflush(stdout);

  std::unordered_map<std::string, uint64_t> counts;
  uint64_t words = 0;
  size_t done = 0, failed = 0;
  uint32_t restarts = 0;
  double contexts = 0, restartsCounted = 0;
  bool measured = false;
  auto begun = std::chrono::steady_clock::now();
  Progress progress(paths.size());

  co_await harrow::failAfter(root.timer(), flags.deadlineMs * kj::MILLISECONDS, [&]() {
    return harrow::openWorkerPool<IndexerImpl>(root, flags.workers, &IndexerActor::Server::index,
        [&](harrow::WorkerPool<IndexerActor::Server::IndexCall>& pool) -> Co<void> {
      co_await pool.mapUnordered(paths,
          [&](Indexer::File::Builder file, const std::string& path) {
            file.setPath(path);
            file.setSlowMillis(flags.slowMs);
          },
          [&](size_t, Indexer::Counts::Reader result) {  // the stream of results, merged
            for (auto entry : result.getWords()) counts[entry.getWord().cStr()] += entry.getCount();
            words += result.getTotal();
            ++done;
            progress.update(done + failed, words, failed, pool.restarts());
          },
          [&](size_t i, kj::Exception&& error) {  // a file no worker could index
            ++failed;
            progress.interrupt();
            printf("%s: not indexed: %s\n", paths[i].c_str(), error.getDescription().cStr());
            fflush(stdout);
          });
      restarts = pool.restarts();
      progress.update(done + failed, words, failed, restarts, /*last=*/true);
      if (root.metrics().enabled()) {
        // What a scrape of --harrow-metrics gets right now (the workers still run).
        auto snapshot = co_await harrow::collectTree(root);
        auto text = harrow::renderExposition(snapshot->getRoot<harrow::metrics::Snapshot>());
        contexts = sumOf(text, "harrow_calls_finished_total", "method=\"index\"");
        restartsCounted = sumOf(text, "harrow_restarts_total", "");
        measured = true;
      }
    }, {.name = "indexer"});
  });

  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begun).count();
  printf("indexed %zu of %zu files, %llu words, %zu distinct; %u worker restarts; %.2f s\n", done,
         paths.size(), (unsigned long long)words, counts.size(), restarts, seconds);
  std::vector<std::pair<std::string, uint64_t>> ranked(counts.begin(), counts.end());
  std::sort(ranked.begin(), ranked.end(), [](auto& a, auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  printf("top %u words:\n", flags.top);
  for (size_t i = 0; i < ranked.size() && i < flags.top; ++i) {
    printf("%4zu. %-12s %llu\n", i + 1, ranked[i].first.c_str(),
           (unsigned long long)ranked[i].second);
  }
  if (measured) {
    printf("metrics: %.0f index contexts finished on the workers (harrow_calls_finished_total), "
           "%.0f restarts (harrow_restarts_total)\n", contexts, restartsCounted);
  }
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // The poison file's abort() is expected: no core files.
  struct rlimit noCore = {0, 0};
  setrlimit(RLIMIT_CORE, &noCore);
  harrow::Implementations impls;
  impls.add<IndexerImpl>("indexer");
  Flags flags = parseFlags(argc, argv);
  return harrow::main(argc, argv, impls,
                      [&](harrow::Actor& root) -> Co<void> { co_await run(root, flags); });
}
