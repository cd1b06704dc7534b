#include "proxy/json_printer.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"

namespace coach::proxy {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

constexpr char kHex[] = "0123456789abcdef";

void AppendU16(uint32_t unit, std::string* out) {
  char escaped[6] = {'\\',
                     'u',
                     kHex[(unit >> 12) & 0xf],
                     kHex[(unit >> 8) & 0xf],
                     kHex[(unit >> 4) & 0xf],
                     kHex[unit & 0xf]};
  out->append(escaped, sizeof escaped);
}

// Whether protobuf's printer writes this code point (>= U+00A0) as \uXXXX:
// invisible or line-breaking characters that JavaScript and HTML mishandle.
bool EscapedAboveLatin1(uint32_t cp) {
  switch (cp) {
    case 0x00ad:
    case 0x06dd:
    case 0x070f:
    case 0x17b4:
    case 0x17b5:
    case 0xfeff:
    case 0xfff9:
    case 0xfffa:
    case 0xfffb:
    case 0xe0001: return true;
    default:
      return (cp >= 0x0600 && cp <= 0x0603) || (cp >= 0x200b && cp <= 0x200f) ||
             (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2064) ||
             (cp >= 0x206a && cp <= 0x206f) ||
             (cp >= 0x1d173 && cp <= 0x1d17a) ||
             (cp >= 0xe0020 && cp <= 0xe007f);
  }
}

void AppendEscapedAscii(unsigned char c, std::string* out) {
  switch (c) {
    case '"': out->append("\\\""); return;
    case '\\': out->append("\\\\"); return;
    case '\b': out->append("\\b"); return;
    case '\t': out->append("\\t"); return;
    case '\n': out->append("\\n"); return;
    case '\f': out->append("\\f"); return;
    case '\r': out->append("\\r"); return;
    default: AppendU16(c, out); return;  // other controls, <, >, DEL
  }
}

bool AsciiNeedsEscape(unsigned char c) {
  return c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == 0x7f;
}

// The length of the UTF-8 sequence at `s` and its code point; 0 when the
// bytes are not well-formed UTF-8 (overlong, surrogate, beyond U+10FFFF,
// truncated).
size_t DecodeUtf8(absl::string_view s, uint32_t* cp) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto cont = [&](size_t i) {
    return i < s.size() && (b(i) & 0xc0) == 0x80;
  };
  const unsigned char lead = b(0);
  if (lead >= 0xc2 && lead <= 0xdf && cont(1)) {
    *cp = ((lead & 0x1fu) << 6) | (b(1) & 0x3fu);
    return 2;
  }
  if (lead >= 0xe0 && lead <= 0xef && cont(1) && cont(2)) {
    *cp = ((lead & 0x0fu) << 12) | ((b(1) & 0x3fu) << 6) | (b(2) & 0x3fu);
    if (*cp < 0x800 || (*cp >= 0xd800 && *cp <= 0xdfff)) return 0;
    return 3;
  }
  if (lead >= 0xf0 && lead <= 0xf4 && cont(1) && cont(2) && cont(3)) {
    *cp = ((lead & 0x07u) << 18) | ((b(1) & 0x3fu) << 12) |
          ((b(2) & 0x3fu) << 6) | (b(3) & 0x3fu);
    if (*cp < 0x10000 || *cp > 0x10ffff) return 0;
    return 4;
  }
  return 0;
}

bool AppendString(absl::string_view s, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    // The run of bytes written as they are.
    size_t run = i;
    while (run < s.size() && static_cast<unsigned char>(s[run]) < 0x80 &&
           !AsciiNeedsEscape(static_cast<unsigned char>(s[run]))) {
      ++run;
    }
    out->append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      AppendEscapedAscii(c, out);
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t length = DecodeUtf8(s.substr(i), &cp);
    if (length == 0) return false;  // protobuf's printer decides
    if (cp < 0xa0) {
      AppendU16(cp, out);  // C1 controls
    } else if (!EscapedAboveLatin1(cp)) {
      out->append(s.data() + i, length);
    } else if (cp < 0x10000) {
      AppendU16(cp, out);
    } else {
      AppendU16(0xd800 + ((cp - 0x10000) >> 10), out);
      AppendU16(0xdc00 + ((cp - 0x10000) & 0x3ff), out);
    }
    i += length;
  }
  out->push_back('"');
  return true;
}

bool IsTimestamp(const FieldDescriptor& field) {
  return field.message_type() == google::protobuf::Timestamp::descriptor();
}

bool AppendMessage(const Message& message, std::string* out);

bool AppendTimestamp(const Message& value, std::string* out) {
  google::protobuf::Timestamp timestamp;
  timestamp.CopyFrom(value);
  using google::protobuf::util::TimeUtil;
  if (timestamp.seconds() < TimeUtil::kTimestampMinSeconds ||
      timestamp.seconds() > TimeUtil::kTimestampMaxSeconds ||
      timestamp.nanos() < 0 || timestamp.nanos() > 999999999) {
    return false;  // protobuf's printer refuses it, with its message
  }
  out->push_back('"');
  out->append(TimeUtil::ToString(timestamp));
  out->push_back('"');
  return true;
}

// One value of `field` (element `index` when repeated, else -1).
bool AppendValue(const Message& message, const FieldDescriptor& field,
                 int index, std::string* out) {
  const Reflection& r = *message.GetReflection();
  const bool repeated = index >= 0;
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      absl::StrAppend(out, repeated ? r.GetRepeatedInt32(message, &field, index)
                                    : r.GetInt32(message, &field));
      return true;
    case FieldDescriptor::CPPTYPE_UINT32:
      absl::StrAppend(out, repeated
                               ? r.GetRepeatedUInt32(message, &field, index)
                               : r.GetUInt32(message, &field));
      return true;
    case FieldDescriptor::CPPTYPE_INT64:
      absl::StrAppend(out, "\"",
                      repeated ? r.GetRepeatedInt64(message, &field, index)
                               : r.GetInt64(message, &field),
                      "\"");
      return true;
    case FieldDescriptor::CPPTYPE_UINT64:
      absl::StrAppend(out, "\"",
                      repeated ? r.GetRepeatedUInt64(message, &field, index)
                               : r.GetUInt64(message, &field),
                      "\"");
      return true;
    case FieldDescriptor::CPPTYPE_BOOL:
      out->append((repeated ? r.GetRepeatedBool(message, &field, index)
                            : r.GetBool(message, &field))
                      ? "true"
                      : "false");
      return true;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int number = repeated
                             ? r.GetRepeatedEnumValue(message, &field, index)
                             : r.GetEnumValue(message, &field);
      const auto* value = field.enum_type()->FindValueByNumber(number);
      if (value == nullptr) {
        absl::StrAppend(out, number);
        return true;
      }
      return AppendString(value->name(), out);
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      if (field.type() == FieldDescriptor::TYPE_BYTES) return false;
      std::string scratch;
      const std::string& text =
          repeated
              ? r.GetRepeatedStringReference(message, &field, index, &scratch)
              : r.GetStringReference(message, &field, &scratch);
      return AppendString(text, out);
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const Message& value = repeated
                                 ? r.GetRepeatedMessage(message, &field, index)
                                 : r.GetMessage(message, &field);
      if (IsTimestamp(field)) return AppendTimestamp(value, out);
      return AppendMessage(value, out);
    }
    default:  // double, float
      return false;
  }
}

bool AppendField(const Message& message, const FieldDescriptor& field,
                 bool* first, std::string* out) {
  if (!*first) out->push_back(',');
  *first = false;
  out->push_back('"');
  out->append(field.json_name());
  out->append("\":");
  if (!field.is_repeated()) return AppendValue(message, field, -1, out);
  out->push_back('[');
  const int size = message.GetReflection()->FieldSize(message, &field);
  for (int i = 0; i < size; ++i) {
    if (i > 0) out->push_back(',');
    if (!AppendValue(message, field, i, out)) return false;
  }
  out->push_back(']');
  return true;
}

// Whether protobuf's printer writes `field` after the others (when set):
// it reserves a place in declaration order for every field but a oneof's
// non-message members, and a Timestamp it prints as a string takes a new
// place at the end rather than its reserved one.
bool PrintedLast(const FieldDescriptor& field) {
  if (field.is_repeated()) return false;
  if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return IsTimestamp(field);
  }
  return field.containing_oneof() != nullptr;
}

bool AppendMessage(const Message& message, std::string* out) {
  const Descriptor& type = *message.GetDescriptor();
  if (type.well_known_type() != Descriptor::WELLKNOWNTYPE_UNSPECIFIED) {
    return false;  // Timestamp is printed by its field; the others: protobuf
  }
  const Reflection& r = *message.GetReflection();
  absl::InlinedVector<const FieldDescriptor*, 8> last;
  bool first = true;
  out->push_back('{');
  for (int i = 0; i < type.field_count(); ++i) {
    const FieldDescriptor& field = *type.field(i);
    if (field.is_map()) return false;
    if (PrintedLast(field)) {
      if (r.HasField(message, &field)) last.push_back(&field);
      continue;
    }
    // Messages are printed when set; lists and plain scalars always.
    if (!field.is_repeated() &&
        field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
        !r.HasField(message, &field)) {
      continue;
    }
    if (!AppendField(message, field, &first, out)) return false;
  }
  std::sort(last.begin(), last.end(),
            [](const FieldDescriptor* a, const FieldDescriptor* b) {
              return a->number() < b->number();
            });
  for (const FieldDescriptor* field : last) {
    if (!AppendField(message, *field, &first, out)) return false;
  }
  out->push_back('}');
  return true;
}

}  // namespace

bool PrintJson(const Message& message, std::string* out) {
  return AppendMessage(message, out);
}

}  // namespace coach::proxy
