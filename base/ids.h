// Identifiers for sessions and messages: random UUIDv4 strings (122 random
// bits from OpenSSL's CSPRNG), so that a session id cannot be guessed.
#ifndef COACH_BASE_IDS_H_
#define COACH_BASE_IDS_H_

#include <string>

namespace coach {

// "1b4e28ba-2fa1-4d2b-883f-0016d3cca427". Aborts if the CSPRNG fails, which
// only happens on a broken system: an id we cannot trust is worse than none.
std::string NewRandomId();

}  // namespace coach

#endif  // COACH_BASE_IDS_H_
