// What the benchmarks' summaries share: the figure a row prints for a set of repetitions.
//
//   std::vector<double> ms = ...;  // one figure per repetition
//   printf("| %s | %.1f |\n", name, harrow::bench::median(ms));
//
// The median (the upper one for an even count), not the mean: on a loaded machine one slow
// repetition moves the mean but not the median. 0 for no figures (a row filtered out).
// call_bench takes its medians from Google Benchmark's aggregates instead.

#pragma once

#include <algorithm>
#include <vector>

namespace harrow::bench {

inline double median(std::vector<double> figures) {
  if (figures.empty()) return 0;
  std::sort(figures.begin(), figures.end());
  return figures[figures.size() / 2];
}

}  // namespace harrow::bench
