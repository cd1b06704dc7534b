// Metrics: counters, gauges and histograms with labels, rendered in the
// Prometheus text exposition format 0.0.4 — the few hundred lines the
// binaries need, since prometheus-cpp is not packaged by Debian.
//
//   metrics::Registry registry;
//   metrics::Family<metrics::Counter>& sends = registry.AddCounter(
//       "coach_sends_total", "Sends by outcome.", {"outcome"});
//   metrics::Counter& ok = sends.WithLabels({"ok"});  // once, then cached
//   ok.Increment();                                    // lock-free
//   std::string text = registry.Render();              // for GET /metrics
//
// Hot path: a series (one set of label values) is a few atomics; recording
// on it takes no lock. Finding a series (WithLabels) takes its family's
// lock, so callers look series up once and keep the reference: a series
// lives as long as its registry.
//
// There is no process-wide default registry: whoever owns the instrumented
// parts owns their registry and hands it (or series from it) down, so that
// two servers in one test process keep their own numbers.
//
// Thread-safety: everything may be called from any thread. A Render that
// runs while series are updated sees each value at some moment of the
// render; a histogram's _count is the sum of its buckets as rendered.
#ifndef COACH_BASE_METRICS_H_
#define COACH_BASE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace coach::metrics {

// Only goes up (Prometheus resets it with the process).
class Counter {
 public:
  // `by` >= 0.
  void Increment(double by = 1) {
    value_.fetch_add(by, std::memory_order_relaxed);
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with fixed upper bounds (le); +Inf is
// implied. Sum and count as Prometheus wants them.
class Histogram {
 public:
  // `bounds`: strictly increasing, finite.
  explicit Histogram(std::vector<double> bounds);

  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Observations per bucket, not cumulated: bounds().size() + 1 of them, the
  // last one above every bound.
  std::vector<uint64_t> BucketCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  const std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Every series of one metric: its name, help, label names and, per set of
// label values, one Series.
template <typename Series>
class Family {
 public:
  // The series of `values` (as many as the family's label names), created
  // at its first use. The reference stays valid as long as the registry.
  Series& WithLabels(const std::vector<std::string>& values);

  const std::string& name() const { return name_; }

 private:
  friend class Registry;
  Family(std::string name, std::string help,
         std::vector<std::string> label_names, std::vector<double> bounds = {})
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}
  void Render(std::string& out) const;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms only
  mutable absl::Mutex mu_;
  // Ordered: the rendering is stable.
  std::map<std::vector<std::string>, std::unique_ptr<Series>> series_
      ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // `name` and label names as Prometheus wants them ([a-zA-Z_:][a-zA-Z0-9_:]*,
  // counters ending in _total, units in the name: _seconds); each name once.
  // The family lives as long as the registry.
  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  // `bounds`: the buckets' upper bounds, strictly increasing.
  Family<Histogram>& AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bounds);

  // Every family in the order added, in the text format 0.0.4 (# HELP,
  // # TYPE, then one line per series; a histogram's _bucket{le=...} lines
  // cumulated up to le="+Inf", then _sum and _count). A family without
  // series yet shows only its HELP and TYPE.
  std::string Render() const;

 private:
  struct Entry {
    const Family<Counter>* counter = nullptr;
    const Family<Gauge>* gauge = nullptr;
    const Family<Histogram>* histogram = nullptr;
  };
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Family<Counter>>> counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_
      ABSL_GUARDED_BY(mu_);
  std::vector<Entry> order_ ABSL_GUARDED_BY(mu_);
};

// The text format's escapes: a label value's \ " and newline, a HELP
// text's \ and newline.
std::string EscapeLabelValue(absl::string_view value);
std::string EscapeHelp(absl::string_view help);
// A sample value or bound as the format writes it: the shortest decimal
// that reads back the same, "+Inf", "-Inf" or "NaN".
std::string FormatValue(double value);

}  // namespace coach::metrics

#endif  // COACH_BASE_METRICS_H_
