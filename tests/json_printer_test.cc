// proxy/json_printer.h against protobuf's own printer: every message type of
// coach.v1, filled at random (strings full of the characters protobuf
// escapes, extreme integers, unknown enum numbers, optional and oneof
// members set or not, timestamps at every precision), must print the same
// bytes; the shapes it does not print fall back rather than differ.
#include "proxy/json_printer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coach/v1/chat.pb.h"
#include "coach/v1/user.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "proxy/transcoder.h"

namespace coach::proxy {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string ProtobufJson(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  EXPECT_TRUE(
      google::protobuf::util::MessageToJsonString(message, &json, options)
          .ok());
  return json;
}

std::string Utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xc0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xe0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    s += static_cast<char>(0xf0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return s;
}

class RandomFiller {
 public:
  explicit RandomFiller(uint32_t seed) : rng_(seed) {}

  void Fill(Message* message, int depth) {
    const Descriptor& type = *message->GetDescriptor();
    if (&type == google::protobuf::Timestamp::descriptor()) {
      FillTimestamp(message);
      return;
    }
    const auto* r = message->GetReflection();
    for (int i = 0; i < type.field_count(); ++i) {
      const FieldDescriptor* field = type.field(i);
      if (Coin(3)) continue;  // left unset, one time in three
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && depth >= 3) {
        continue;
      }
      if (field->is_repeated()) {
        const int n = Below(4);
        for (int k = 0; k < n; ++k) Add(message, field, depth);
        continue;
      }
      Set(message, r, field, depth);
    }
  }

 private:
  bool Coin(int one_in) { return Below(one_in) == 0; }
  int Below(int n) {
    return std::uniform_int_distribution<int>(0, n - 1)(rng_);
  }

  template <typename T>
  T Integer() {
    switch (Below(4)) {
      case 0: return 0;
      case 1: return std::numeric_limits<T>::max();
      case 2: return std::numeric_limits<T>::min();
      default: return static_cast<T>(rng_());
    }
  }

  std::string Text() {
    static const std::vector<uint32_t> kSpecial = {
        0x00,    0x01,    0x08,    0x09,    0x0a,    0x0b,    0x0c,    0x0d,
        0x1f,    '"',     '\\',    '/',     '<',     '>',     '&',     '\'',
        0x7f,    0x80,    0x85,    0x9f,    0xa0,    0xad,    0xe9,    0x600,
        0x603,   0x604,   0x6dd,   0x70f,   0x17b4,  0x17b5,  0x17b6,  0x200a,
        0x200b,  0x200f,  0x2010,  0x2027,  0x2028,  0x2029,  0x202e,  0x202f,
        0x205f,  0x2060,  0x2064,  0x2065,  0x206a,  0x206f,  0x2070,  0x4e2d,
        0xd7ff,  0xe000,  0xfeff,  0xfff8,  0xfff9,  0xfffb,  0xfffc,  0xfffd,
        0x10000, 0x1d172, 0x1d173, 0x1d17a, 0x1d17b, 0x1f600, 0xe0000, 0xe0001,
        0xe0002, 0xe001f, 0xe0020, 0xe007f, 0xe0080, 0x10ffff};
    std::string s;
    const int n = Below(12);
    for (int k = 0; k < n; ++k) {
      if (Coin(2)) {
        s += static_cast<char>(' ' + Below(95));
      } else {
        s += Utf8(kSpecial[Below(static_cast<int>(kSpecial.size()))]);
      }
    }
    return s;
  }

  int EnumNumber(const FieldDescriptor* field) {
    if (Coin(5)) return 40 + Below(10);  // unknown to this build
    const auto* type = field->enum_type();
    return type->value(Below(type->value_count()))->number();
  }

  void FillTimestamp(Message* message) {
    google::protobuf::Timestamp t;
    t.set_seconds(std::uniform_int_distribution<int64_t>(-62135596800,
                                                         253402300799)(rng_));
    static const int kUnits[] = {1000000000, 1000000, 1000, 1};
    const int unit = kUnits[Below(4)];
    t.set_nanos(Below(1000000000 / unit) * unit % 1000000000);
    message->CopyFrom(t);
  }

  void Set(Message* m, const google::protobuf::Reflection* r,
           const FieldDescriptor* f, int depth) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(m, f, Integer<int32_t>());
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->SetInt64(m, f, Integer<int64_t>());
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r->SetUInt32(m, f, Integer<uint32_t>());
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        r->SetUInt64(m, f, Integer<uint64_t>());
        break;
      case FieldDescriptor::CPPTYPE_BOOL: r->SetBool(m, f, Coin(2)); break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r->SetEnumValue(m, f, EnumNumber(f));
        break;
      case FieldDescriptor::CPPTYPE_STRING: r->SetString(m, f, Text()); break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        Fill(r->MutableMessage(m, f), depth + 1);
        break;
      default: break;  // none in coach.v1
    }
  }

  void Add(Message* m, const FieldDescriptor* f, int depth) {
    const auto* r = m->GetReflection();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r->AddInt32(m, f, Integer<int32_t>());
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->AddInt64(m, f, Integer<int64_t>());
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r->AddUInt32(m, f, Integer<uint32_t>());
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        r->AddUInt64(m, f, Integer<uint64_t>());
        break;
      case FieldDescriptor::CPPTYPE_BOOL: r->AddBool(m, f, Coin(2)); break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r->AddEnumValue(m, f, EnumNumber(f));
        break;
      case FieldDescriptor::CPPTYPE_STRING: r->AddString(m, f, Text()); break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        Fill(r->AddMessage(m, f), depth + 1);
        break;
      default: break;
    }
  }

  std::mt19937 rng_;
};

// Every message type coach.v1 declares (requests too: the more shapes, the
// better), from the files of the two services.
std::vector<const Descriptor*> CoachMessages() {
  std::vector<const Descriptor*> types;
  for (const auto* file : {v1::ChatMessage::descriptor()->file(),
                           v1::UserStats::descriptor()->file()}) {
    for (int i = 0; i < file->message_type_count(); ++i) {
      types.push_back(file->message_type(i));
    }
  }
  return types;
}

TEST(JsonPrinterTest, SameBytesAsProtobufOnEveryCoachMessage) {
  google::protobuf::DynamicMessageFactory factory;
  int printed = 0;
  for (const Descriptor* type : CoachMessages()) {
    const Message* prototype =
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(
            type);
    ASSERT_NE(prototype, nullptr) << type->full_name();
    for (uint32_t seed = 0; seed < 300; ++seed) {
      std::unique_ptr<Message> message(prototype->New());
      RandomFiller(seed * 7919 + type->index()).Fill(message.get(), 0);
      std::string ours;
      if (!PrintJson(*message, &ours)) {
        // Only shapes it does not know: bytes (HttpBody) here.
        ADD_FAILURE() << type->full_name()
                      << " not printed: " << message->ShortDebugString();
        continue;
      }
      ASSERT_EQ(ours, ProtobufJson(*message))
          << type->full_name() << ", seed " << seed << ": "
          << message->ShortDebugString();
      ++printed;
    }
  }
  EXPECT_GT(printed, 1000);
}

TEST(JsonPrinterTest, EmptyMessagesAndFieldOrder) {
  v1::GetUserStatsResponse stats;
  std::string json;
  ASSERT_TRUE(PrintJson(stats, &json));
  EXPECT_EQ(json, "{}");
  stats.mutable_stats()->set_remaining_credits(5);
  json.clear();
  ASSERT_TRUE(PrintJson(stats, &json));
  // proto3 `optional` last, as protobuf prints it.
  EXPECT_EQ(
      json,
      R"({"stats":{"totalChats":0,"totalMessages":0,"plan":"PLAN_UNSPECIFIED",)"
      R"("status":"USER_STATUS_UNSPECIFIED","remainingCredits":5}})");
  EXPECT_EQ(json, ProtobufJson(stats));
}

TEST(JsonPrinterTest, ShapesItDoesNotKnowFallBackToProtobuf) {
  google::protobuf::Struct value;
  (*value.mutable_fields())["ratio"].set_number_value(0.5);
  std::string json;
  EXPECT_FALSE(PrintJson(value, &json));
  // ResponseToJson prints it all the same, through protobuf.
  auto printed = ResponseToJson(value);
  ASSERT_TRUE(printed.ok());
  EXPECT_EQ(*printed, R"({"ratio":0.5})");

  // A string protobuf would not call UTF-8: protobuf's printer decides.
  v1::ChatMessage message;
  message.GetReflection()->SetString(
      &message, v1::ChatMessage::descriptor()->FindFieldByName("content"),
      std::string("caf\xc3", 4));
  json.clear();
  EXPECT_FALSE(PrintJson(message, &json));
}

}  // namespace
}  // namespace coach::proxy
