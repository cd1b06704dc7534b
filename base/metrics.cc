#include "base/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace coach::metrics {
namespace {

template <typename Series>
std::unique_ptr<Series> NewSeries(const std::vector<double>& /*bounds*/) {
  return std::make_unique<Series>();
}
template <>
std::unique_ptr<Histogram> NewSeries<Histogram>(
    const std::vector<double>& bounds) {
  return std::make_unique<Histogram>(bounds);
}

const char* TypeName(const Counter*) { return "counter"; }
const char* TypeName(const Gauge*) { return "gauge"; }
const char* TypeName(const Histogram*) { return "histogram"; }

// `{a="x",b="y"}` with `extra` (`le="0.5"`) last; "" without any label.
std::string Labels(const std::vector<std::string>& names,
                   const std::vector<std::string>& values,
                   absl::string_view extra = "") {
  if (names.empty() && extra.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ",";
    absl::StrAppend(&out, names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra.empty()) absl::StrAppend(&out, names.empty() ? "" : ",", extra);
  out += "}";
  return out;
}

void RenderSeries(const std::string& name, const std::string& labels,
                  const Counter& counter, const std::vector<std::string>&,
                  const std::vector<std::string>&, std::string& out) {
  absl::StrAppend(&out, name, labels, " ", FormatValue(counter.Value()), "\n");
}

void RenderSeries(const std::string& name, const std::string& labels,
                  const Gauge& gauge, const std::vector<std::string>&,
                  const std::vector<std::string>&, std::string& out) {
  absl::StrAppend(&out, name, labels, " ", FormatValue(gauge.Value()), "\n");
}

void RenderSeries(const std::string& name, const std::string& labels,
                  const Histogram& histogram,
                  const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values,
                  std::string& out) {
  const std::vector<uint64_t> counts = histogram.BucketCounts();
  uint64_t cumulated = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulated += counts[i];
    const std::string le = i < histogram.bounds().size()
                               ? FormatValue(histogram.bounds()[i])
                               : "+Inf";
    absl::StrAppend(
        &out, name, "_bucket",
        Labels(label_names, label_values, absl::StrCat("le=\"", le, "\"")), " ",
        cumulated, "\n");
  }
  absl::StrAppend(&out, name, "_sum", labels, " ", FormatValue(histogram.Sum()),
                  "\n");
  absl::StrAppend(&out, name, "_count", labels, " ", cumulated, "\n");
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i] = 0;
}

void Histogram::Observe(double value) {
  // The first bound >= value: buckets are "less than or equal".
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) -
      bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::BucketCounts() const {
  std::vector<uint64_t> counts(bounds_.size() + 1);
  for (size_t i = 0; i < counts.size(); ++i) {
    counts[i] = counts_[i].load(std::memory_order_relaxed);
  }
  return counts;
}

template <typename Series>
Series& Family<Series>::WithLabels(const std::vector<std::string>& values) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Series>& series = series_[values];
  if (series == nullptr) series = NewSeries<Series>(bounds_);
  return *series;
}

template <typename Series>
void Family<Series>::Render(std::string& out) const {
  absl::StrAppend(&out, "# HELP ", name_, " ", EscapeHelp(help_), "\n",
                  "# TYPE ", name_, " ",
                  TypeName(static_cast<const Series*>(nullptr)), "\n");
  absl::MutexLock lock(&mu_);
  for (const auto& [values, series] : series_) {
    RenderSeries(name_, Labels(label_names_, values), *series, label_names_,
                 values, out);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Family<Counter>& Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  counters_.emplace_back(new Family<Counter>(std::move(name), std::move(help),
                                             std::move(label_names)));
  order_.push_back(Entry{.counter = counters_.back().get()});
  return *counters_.back();
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  gauges_.emplace_back(new Family<Gauge>(std::move(name), std::move(help),
                                         std::move(label_names)));
  order_.push_back(Entry{.gauge = gauges_.back().get()});
  return *gauges_.back();
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  histograms_.emplace_back(
      new Family<Histogram>(std::move(name), std::move(help),
                            std::move(label_names), std::move(bounds)));
  order_.push_back(Entry{.histogram = histograms_.back().get()});
  return *histograms_.back();
}

std::string Registry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const Entry& entry : order_) {
    if (entry.counter != nullptr) entry.counter->Render(out);
    if (entry.gauge != nullptr) entry.gauge->Render(out);
    if (entry.histogram != nullptr) entry.histogram->Render(out);
  }
  return out;
}

namespace {

// \ and newline escaped; '"' too when `quote`.
std::string Escape(absl::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  return Escape(value, /*quote=*/true);
}

std::string EscapeHelp(absl::string_view help) {
  return Escape(help, /*quote=*/false);
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const std::to_chars_result written =
      std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, written.ptr);
}

}  // namespace coach::metrics
