#include "server/coach/offline_coach.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "base/text.h"

namespace coach {
namespace {

// ---------------------------------------------------------------------------
// Matching.
//
// User text and keywords both go through FoldForMatching: lower-case ASCII,
// French accented letters folded to their base letter, and every other
// character (punctuation, apostrophes, emoji...) turned into a single space.
// A keyword then matches at the start of a word of the message, so
// "timide" also matches "timides" and "m'a quitté" matches "M’a quittée".
// A keyword ending with a space ("appli ") must match a whole word, which
// keeps "appli" from matching "appliquer".
// ---------------------------------------------------------------------------

struct Fold {
  absl::string_view utf8;
  absl::string_view ascii;
};

// The accented letters French users type, lower and upper case.
constexpr Fold kFolds[] = {
    {"à", "a"}, {"â", "a"},  {"ä", "a"},  {"À", "a"},  {"Â", "a"},  {"Ä", "a"},
    {"ç", "c"}, {"Ç", "c"},  {"é", "e"},  {"è", "e"},  {"ê", "e"},  {"ë", "e"},
    {"É", "e"}, {"È", "e"},  {"Ê", "e"},  {"Ë", "e"},  {"î", "i"},  {"ï", "i"},
    {"Î", "i"}, {"Ï", "i"},  {"ô", "o"},  {"ö", "o"},  {"Ô", "o"},  {"Ö", "o"},
    {"ù", "u"}, {"û", "u"},  {"ü", "u"},  {"Ù", "u"},  {"Û", "u"},  {"Ü", "u"},
    {"ÿ", "y"}, {"œ", "oe"}, {"Œ", "oe"}, {"æ", "ae"}, {"Æ", "ae"},
};

constexpr uint8_t kAsciiLimit = 0x80;
constexpr uint8_t kContinuationMask = 0xC0;
constexpr uint8_t kContinuationTag = 0x80;

bool IsContinuationByte(char c) {
  return (static_cast<uint8_t>(c) & kContinuationMask) == kContinuationTag;
}

// Appends a separator, never two in a row, so words stay one space apart.
void AppendSeparator(std::string& out) {
  if (out.empty() || out.back() != ' ') out.push_back(' ');
}

// See the comment above. Malformed UTF-8 is tolerated: unknown bytes are
// separators.
std::string FoldForMatching(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (static_cast<uint8_t>(c) < kAsciiLimit) {
      if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
        out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
      } else {
        AppendSeparator(out);
      }
      ++i;
      continue;
    }
    bool folded = false;
    for (const Fold& fold : kFolds) {
      if (absl::StartsWith(text.substr(i), fold.utf8)) {
        absl::StrAppend(&out, fold.ascii);
        i += fold.utf8.size();
        folded = true;
        break;
      }
    }
    if (folded) continue;
    // Any other code point (or a stray byte): skip it whole.
    ++i;
    while (i < text.size() && IsContinuationByte(text[i])) ++i;
    AppendSeparator(out);
  }
  return out;
}

// Number of words in `folded`, a FoldForMatching output.
size_t CountWords(absl::string_view folded) {
  size_t words = 0;
  for (size_t i = 0; i < folded.size(); ++i) {
    if (folded[i] != ' ' && (i == 0 || folded[i - 1] == ' ')) ++words;
  }
  return words;
}

// ---------------------------------------------------------------------------
// Themes, in priority order: the first theme with a matching keyword wins.
// Safety comes first (distress, then manipulation), then concrete situations
// before general feelings, so "j'ai peur de l'aborder" gets advice on
// approaching rather than on anxiety; anxiety, whose "peur" is the vaguest
// keyword, comes after confidence.
// ---------------------------------------------------------------------------

enum class ThemeId {
  kDistress,
  kManipulation,
  kRejection,
  kFirstDate,
  kFirstMessage,
  kConfidence,
  kSocialAnxiety,
  kGreeting,
  kDefault,
};

struct Theme {
  ThemeId id;
  absl::Span<const absl::string_view> keywords;
  // Given the first time the theme comes up in a conversation.
  absl::string_view reply;
  // Given when an earlier user message already had this theme, so a user
  // who keeps talking about it gets a new tip. Empty: `reply` again.
  absl::string_view follow_up;
  // Matches only messages of at most this many words, or kAnyLength.
  size_t max_words;
  // Whether a follow-up message is thanked for its details first. Off where
  // the thanks would sound wrong (distress, refusal, greeting).
  bool thanks_for_details;
};

// "en finir" also catches "en finir avec ma timidité": erring towards care
// is the right trade-off here.
constexpr absl::string_view kDistressKeywords[] = {
    "suicid",
    "me tuer",
    "en finir",
    "plus envie de vivre",
    "envie de mourir",
    "veux mourir",
    "me faire du mal",
    "mettre fin à mes jours",
    "me foutre en l'air",
    "envie de disparaître",
};

// Object forms of "forcer" only: "me forcer à sortir" is a healthy goal.
constexpr absl::string_view kManipulationKeywords[] = {
    "manipul",
    "la forcer",
    "le forcer",
    "les forcer",
    "forcer quelqu",
    "forcer la main",
    "faire céder",
    "qu'elle cède",
    "qu'il cède",
    "sans qu'elle s'en rende compte",
    "sans qu'il s'en rende compte",
    "sans qu'elle le sache",
    "sans qu'il le sache",
    "rendre jalou",
    "ex jalou",
    "qu'elle soit jalou",
    "qu'il soit jalou",
    "provoquer sa jalousie",
    "provoquer de la jalousie",
    "la culpabiliser",
    "le culpabiliser",
    "la faire boire",
    "le faire boire",
};

constexpr absl::string_view kRejectionKeywords[] = {
    "rejet",      "rejeté",      "refus",       "râteau",         "rupture",
    "ghost",      "m'a quitté",  "m'a largué",  "largué",         "séparé",
    "séparation", "friendzone",  "friend zone", "pas réciproque", "chagrin",
    "mon ex ",    "ton ex ",     "son ex ",     "l'ex ",          "m'a dit non",
    "m'a bloqué", "répond plus", "un vent ",
};

constexpr absl::string_view kFirstDateKeywords[] = {
    "premier rendez", "1er rendez",    "rendez-vous", "rdv",
    "date",           "rencard",       "rencart",     "première sortie",
    "premier verre",  "premier dîner",
};

constexpr absl::string_view kFirstMessageKeywords[] = {
    "premier message",
    "premiers messages",
    "1er message",
    "aborde",
    "application",
    "appli ",
    "applis",
    "tinder",
    "bumble",
    "hinge",
    "happn",
    "meetic",
    "match",
    "lui écrire",
    "lui envoyer",
    "premier pas",
    "accroche",
    "brise-glace",
    "engager la conversation",
    "aller lui parler",
    "drague",
};

constexpr absl::string_view kSocialAnxietyKeywords[] = {
    "anxi",
    "angoiss",
    "stress",
    "à l'aise",
    "situations sociales",
    "situation sociale",
    "soirée",
    "peur",
    "panique",
    "rougi",
    "trac ",
    "introverti",
    "regard des autres",
    "en groupe",
};

constexpr absl::string_view kConfidenceKeywords[] = {
    "confian",
    "estime",
    "timid",
    "à la hauteur",
    "pas assez bien",
    "doute de moi",
    "des complexes",
    "mes complexes",
    "complexée",
    "suis complexé",
    "suis nul",
    "me dévalorise",
    "manque d'assurance",
    "sûr de moi",
    "sûre de moi",
};

constexpr absl::string_view kGreetingKeywords[] = {
    "bonjour", "bonsoir", "salut", "coucou", "hello", "hey ", "yo ",
};

// A greeting only when the message is little more than the greeting itself:
// "Salut coach, ça va ?" yes, a long story that starts with "Salut" no.
constexpr size_t kGreetingMaxWords = 6;
constexpr size_t kAnyLength = 0;

constexpr absl::string_view kDistressReply =
    "Ce que tu écris me touche, et je le prends très au sérieux. Si tu "
    "penses à mettre fin à tes jours ou si tu te sens à bout, tu n'as pas à "
    "traverser ça sans soutien.\n\n"
    "Tu peux appeler le 3114, le numéro national de prévention du suicide : "
    "c'est gratuit, confidentiel et joignable 24 h/24, 7 j/7, en France. Si "
    "tu es en danger immédiat, appelle le 112. Parler à une personne de "
    "confiance, un proche ou un médecin, peut aussi t'aider dès maintenant.\n\n"
    "Je reste là pour t'écouter. Est-ce que tu es en sécurité en ce moment ?";

constexpr absl::string_view kManipulationReply =
    "Je comprends que tu aies envie que les choses avancent avec cette "
    "personne, et que l'attente ou l'incertitude soient difficiles. Mais je "
    "ne t'aiderai pas à manipuler quelqu'un, à le forcer ou à le pousser à "
    "céder : une relation qui vaut le coup repose sur le respect et sur le "
    "consentement, libre et sincère, de chacun. Un « non » ou une hésitation "
    "sont des réponses légitimes, pas des obstacles à contourner.\n\n"
    "Je te propose plutôt ce qui marche vraiment sur la durée : dire "
    "clairement et honnêtement ce que tu ressens, écouter ce que l'autre "
    "veut, et accepter sa réponse. Par exemple : « J'aime beaucoup passer du "
    "temps avec toi, et j'aimerais qu'on se voie davantage. Qu'est-ce que tu "
    "en penses ? » C'est plus courageux, et bien plus attirant, que "
    "n'importe quelle technique.\n\n"
    "Qu'est-ce que tu aimerais vraiment vivre avec cette personne, et comment "
    "pourrais-tu le lui dire sincèrement ?";

constexpr absl::string_view kRejectionReply =
    "Ce que tu traverses est difficile, et c'est normal que ça fasse mal. Un "
    "refus, un ghosting ou une rupture touchent notre besoin de lien : tu as "
    "le droit de ressentir de la tristesse ou de la colère, sans te juger. "
    "Et souviens-toi que la réponse de l'autre parle de ses envies, pas de ta "
    "valeur.\n\n"
    "Un exercice qui aide : pendant dix minutes, écris ce que tu ressens sans "
    "te censurer, puis note une chose que cette expérience t'apprend sur ce "
    "que tu recherches vraiment. Ces prochains jours, prends soin de toi "
    "concrètement : du sommeil, un peu de sport, un moment avec une personne "
    "qui compte pour toi.\n\n"
    "Qu'est-ce qui te pèse le plus en ce moment dans cette situation ?";

constexpr absl::string_view kRejectionFollowUp =
    "Pour avancer, essaie de séparer les faits de l'histoire que tu te "
    "racontes : « la personne n'a pas répondu » est un fait, « personne ne "
    "voudra jamais de moi » est une interprétation, souvent bien plus dure "
    "que la réalité.\n\n"
    "Après une rupture, accorde-toi une vraie pause : évite pour un temps de "
    "consulter ses réseaux sociaux, et réinvestis une activité qui te fait du "
    "bien. Après un refus, reconnais ton courage d'avoir osé : c'est "
    "exactement ce courage qui mènera, un jour, à un oui.\n\n"
    "Quelle histoire te racontes-tu sur toi depuis ce qui s'est passé ?";

constexpr absl::string_view kFirstDateReply =
    "Un premier rendez-vous, c'est excitant et stressant à la fois, et c'est "
    "plutôt bon signe : ça veut dire que ça compte pour toi. L'objectif n'est "
    "pas de réussir un examen, mais de voir si vous passez un bon moment "
    "ensemble, l'un comme l'autre.\n\n"
    "Quelques repères concrets : choisis un lieu simple où l'on peut "
    "discuter (un café, une balade), prévois un format court, une heure ou "
    "deux, et garde en tête deux ou trois sujets qui te passionnent vraiment. "
    "Pendant le rendez-vous, écoute autant que tu parles et observe les "
    "signaux de l'autre : son confort et ses envies comptent autant que "
    "les tiens.\n\n"
    "Qu'est-ce qui t'inquiète ou te réjouit le plus à l'idée de ce "
    "rendez-vous ?";

constexpr absl::string_view kFirstDateFollowUp =
    "Pour la conversation, les questions qui marchent le mieux portent sur ce "
    "qui fait vibrer l'autre (« Qu'est-ce qui t'a donné envie de faire ce "
    "métier ? », « C'est quoi ton endroit préféré dans la ville ? ») plutôt "
    "que sur son CV.\n\n"
    "À la fin, sois simple et honnête : si tu as passé un bon moment, dis-le "
    "et propose de vous revoir. Si l'autre hésite, accueille sa réponse sans "
    "insister : un « non » ou un « je ne sais pas encore » se respecte. Le "
    "lendemain, un petit message comme « merci pour ce moment, j'ai bien aimé "
    "notre discussion sur… » fait souvent plaisir.\n\n"
    "Comment imagines-tu que ce rendez-vous se passe, idéalement ?";

constexpr absl::string_view kFirstMessageReply =
    "Faire le premier pas, c'est souvent le plus intimidant, et c'est normal "
    "d'hésiter. Bonne nouvelle : une première approche n'a pas besoin d'être "
    "brillante, elle doit surtout être sincère et donner envie de "
    "répondre.\n\n"
    "Une méthode simple : pars d'un détail précis de son profil ou de la "
    "situation, puis pose une question ouverte. Par exemple : « J'ai vu que "
    "tu as fait de la randonnée dans les Pyrénées, c'est quoi ton plus beau "
    "souvenir là-bas ? » C'est bien plus engageant qu'un simple « salut, ça "
    "va ? ». En face à face, c'est pareil : une remarque sur ce que vous "
    "partagez à ce moment-là, puis une question. Et si la personne ne répond "
    "pas, ce n'est pas un verdict sur ta valeur.\n\n"
    "Qu'est-ce qui a attiré ton attention chez cette personne, pour qu'on "
    "trouve ensemble une accroche qui te ressemble ?";

constexpr absl::string_view kFirstMessageFollowUp =
    "Une fois le contact établi, l'essentiel est l'équilibre : rebondis sur "
    "ce que l'autre te dit, partage un peu de toi en retour, et évite "
    "l'interrogatoire avec des questions en rafale.\n\n"
    "Un petit exercice : écris trois accroches différentes pour la même "
    "personne (une drôle, une curieuse, une sincère), puis garde celle qui te "
    "ressemble le plus. Et quand l'échange est agréable, proposer un appel ou "
    "un verre au bout de quelques jours est souvent plus naturel que de "
    "prolonger indéfiniment les messages.\n\n"
    "Où en est la conversation aujourd'hui, et qu'est-ce qui te bloque pour "
    "la suite ?";

constexpr absl::string_view kSocialAnxietyReply =
    "Ce que tu décris, beaucoup de personnes le vivent : le cœur qui "
    "s'accélère, la peur du jugement, l'envie de repartir. Ce n'est pas un "
    "défaut, c'est ton système d'alarme qui en fait un peu trop, et il se "
    "calme avec de l'entraînement.\n\n"
    "Avant une soirée ou une situation qui te stresse, essaie la respiration "
    "4-6 : inspire par le nez pendant 4 secondes, expire lentement pendant "
    "6 secondes, cinq fois de suite. Sur place, fixe-toi un objectif modeste, "
    "comme poser une question ouverte à une seule personne, et porte ton "
    "attention sur ce qu'elle raconte plutôt que sur toi. Si l'anxiété te "
    "gêne beaucoup au quotidien, en parler à un professionnel de santé peut "
    "vraiment t'aider.\n\n"
    "Dans quelles situations ressens-tu le plus ce stress ?";

constexpr absl::string_view kSocialAnxietyFollowUp =
    "L'aisance sociale se construit surtout par l'exposition progressive. "
    "Fais une liste de situations, de la moins stressante (demander l'heure à "
    "quelqu'un) à la plus stressante (rejoindre un groupe que tu ne connais "
    "pas), et avance d'une marche à la fois, à ton rythme.\n\n"
    "Après chaque étape, note ce que tu craignais et ce qui s'est réellement "
    "passé. Tu verras que la catastrophe imaginée arrive rarement, et c'est "
    "ce décalage qui rassure ton cerveau durablement.\n\n"
    "Quelle serait la toute première marche, facile, que tu pourrais franchir "
    "cette semaine ?";

constexpr absl::string_view kConfidenceReply =
    "Ce manque de confiance, beaucoup de personnes le ressentent, et le fait "
    "que tu en parles montre déjà que tu as envie d'avancer. La confiance "
    "n'est pas un trait de naissance : c'est un muscle qui se construit par "
    "de petites preuves répétées.\n\n"
    "Un exercice simple pour cette semaine : chaque soir, note trois choses "
    "que tu as réussies dans la journée, même minuscules (tu as osé dire "
    "bonjour, tu as tenu un engagement, tu as donné ton avis). Au bout de "
    "quelques jours, relis ta liste : c'est la preuve concrète que tu es plus "
    "capable que ta petite voix critique ne le prétend.\n\n"
    "Dans quelle situation précise aimerais-tu avoir davantage confiance en "
    "toi ?";

constexpr absl::string_view kConfidenceFollowUp =
    "Une piste qui marche bien : repérer ta petite voix critique et lui "
    "répondre comme tu répondrais à quelqu'un que tu aimes. Quand tu te "
    "surprends à penser « je n'y arriverai jamais », demande-toi : « est-ce "
    "que je dirais ça à un ami ? »\n\n"
    "Cette semaine, choisis aussi un mini-défi juste un peu en dehors de ta "
    "zone de confort : poser une question à un collègue, donner ton avis, "
    "faire un compliment sincère. L'important n'est pas le résultat, mais le "
    "fait d'oser.\n\n"
    "Quelle phrase ta petite voix critique te répète-t-elle le plus souvent ?";

constexpr absl::string_view kGreetingReply =
    "Bonjour, et bienvenue ! Je suis Coach, ton coach en confiance en soi et "
    "en relations. Ici, tu peux parler librement et sans jugement : de "
    "timidité, de rencontres, d'un premier message, d'un rendez-vous, ou "
    "simplement de ce que tu ressens.\n\n"
    "Pour qu'on avance ensemble, le plus utile est de partir d'une situation "
    "concrète que tu vis en ce moment.\n\n"
    "Qu'est-ce qui t'amène aujourd'hui ?";

constexpr absl::string_view kGreetingFollowUp =
    "Rebonjour, ça fait plaisir de te retrouver ! On peut reprendre là où on "
    "en était, ou parler de quelque chose de nouveau : une situation qui te "
    "tracasse, une rencontre, un message à écrire.\n\n"
    "Un petit rituel pour commencer : note comment tu te sens là, maintenant, "
    "sur une échelle de 1 à 10. Ça nous aide à voir d'où tu pars.\n\n"
    "De quoi as-tu envie qu'on parle aujourd'hui ?";

constexpr absl::string_view kDefaultReply =
    "Je t'écoute. Chaque situation est unique, et "
    "j'aimerais bien comprendre la tienne avant de te proposer des pistes "
    "adaptées.\n\n"
    "En attendant, un exercice simple qui aide presque toujours : décris la "
    "situation en trois lignes (ce qui s'est passé, ce que tu as ressenti, ce "
    "que tu aimerais qu'il se passe). Mettre des mots précis sur ce qu'on "
    "vit, c'est déjà commencer à reprendre la main.\n\n"
    "Peux-tu m'en dire un peu plus sur ce que tu vis en ce moment, et sur ce "
    "que tu aimerais changer ?";

constexpr absl::string_view kDefaultFollowUp =
    "Une question qui aide souvent à y voir plus clair : si la situation "
    "était réglée demain matin, qu'est-ce qui aurait changé concrètement, "
    "dans ta journée, dans tes relations, dans ta façon de te sentir ?\n\n"
    "Partir de ce résultat souhaité permet de trouver un premier pas "
    "réaliste. On avance mieux avec une petite action concrète cette semaine "
    "qu'avec un grand objectif flou.\n\n"
    "Quel serait, selon toi, ce tout premier petit pas ?";

constexpr absl::string_view kThanksForDetails =
    "Merci de me donner plus de détails. ";

constexpr Theme kThemes[] = {
    {ThemeId::kDistress, kDistressKeywords, kDistressReply, "", kAnyLength,
     false},
    {ThemeId::kManipulation, kManipulationKeywords, kManipulationReply, "",
     kAnyLength, false},
    {ThemeId::kRejection, kRejectionKeywords, kRejectionReply,
     kRejectionFollowUp, kAnyLength, true},
    {ThemeId::kFirstDate, kFirstDateKeywords, kFirstDateReply,
     kFirstDateFollowUp, kAnyLength, true},
    {ThemeId::kFirstMessage, kFirstMessageKeywords, kFirstMessageReply,
     kFirstMessageFollowUp, kAnyLength, true},
    {ThemeId::kConfidence, kConfidenceKeywords, kConfidenceReply,
     kConfidenceFollowUp, kAnyLength, true},
    {ThemeId::kSocialAnxiety, kSocialAnxietyKeywords, kSocialAnxietyReply,
     kSocialAnxietyFollowUp, kAnyLength, true},
    {ThemeId::kGreeting, kGreetingKeywords, kGreetingReply, kGreetingFollowUp,
     kGreetingMaxWords, false},
};

// What a message gets when no theme matches.
constexpr Theme kDefaultTheme = {.id = ThemeId::kDefault,
                                 .keywords = {},
                                 .reply = kDefaultReply,
                                 .follow_up = kDefaultFollowUp,
                                 .max_words = kAnyLength,
                                 .thanks_for_details = true};

constexpr const Theme& FindTheme(ThemeId id) {
  for (const Theme& theme : kThemes) {
    if (theme.id == id) return theme;
  }
  return kDefaultTheme;
}

// The welcome suits an empty message: there is nothing else to answer.
constexpr const Theme& kEmptyMessageTheme = FindTheme(ThemeId::kGreeting);

const Theme& Classify(absl::string_view message) {
  if (TrimSpaces(message).empty()) return kEmptyMessageTheme;
  // Spaces around the text so every word, first and last included, starts
  // after a space and a whole-word keyword can match the last word.
  const std::string folded = FoldForMatching(absl::StrCat(" ", message, " "));
  const size_t words = CountWords(folded);
  for (const Theme& theme : kThemes) {
    if (theme.max_words != kAnyLength && words > theme.max_words) continue;
    for (absl::string_view keyword : theme.keywords) {
      if (absl::StrContains(folded,
                            absl::StrCat(" ", FoldForMatching(keyword)))) {
        return theme;
      }
    }
  }
  return kDefaultTheme;
}

}  // namespace

std::vector<absl::string_view> SentencePieces(absl::string_view text) {
  std::vector<absl::string_view> pieces;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool ends_clause =
        c == '.' || c == '!' || c == '?' || c == ':' || c == ',' || c == '\n';
    // A clause ends at its punctuation and the spaces after it, which stay
    // with it: every piece but the last ends with a space.
    if (!ends_clause || i + 1 >= text.size() ||
        !absl::ascii_isspace(static_cast<unsigned char>(text[i + 1]))) {
      continue;
    }
    size_t end = i + 1;
    while (end < text.size() &&
           absl::ascii_isspace(static_cast<unsigned char>(text[end]))) {
      ++end;
    }
    if (end < text.size()) {
      pieces.push_back(text.substr(start, end - start));
      start = end;
    }
    i = end - 1;
  }
  if (start < text.size()) pieces.push_back(text.substr(start));
  return pieces;
}

// Streams the replies' pieces `delay` apart, oldest reply first, on a
// thread of its own: one pending piece per reply at a time, due at `due`.
// Streams the replies' pieces `delay` apart on a thread of its own: each
// stream waits in `streams_` under the time its next piece is due, so a wake
// takes only what is due (O(log n) each). `done` runs on that thread too
// (the domain stores the reply there, as the coach contract allows): with
// many streams ending at once, the others' next pieces wait for those
// commits, which is jitter an offline coach can afford.
class OfflineCoach::Pacer {
 public:
  explicit Pacer(absl::Duration delay)
      : delay_(delay), thread_([this] { Run(); }) {}

  ~Pacer() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

  void Add(CoachRequest request, CoachReply reply, ReplyCallback done) {
    Stream stream;
    stream.request = std::move(request);
    stream.reply = std::move(reply);
    stream.done = std::move(done);
    for (absl::string_view piece : SentencePieces(stream.reply.content)) {
      stream.pieces.emplace_back(piece);
    }
    absl::MutexLock lock(&mu_);
    streams_.emplace(absl::Now(), std::move(stream));  // the first at once
    ++added_;
  }

  // Fails every stream still running, and every later one (the server's
  // grace period is over).
  void CancelAll() {
    absl::MutexLock lock(&mu_);
    cancel_all_ = true;
  }

 private:
  struct Stream {
    CoachRequest request;
    CoachReply reply;
    ReplyCallback done;
    std::vector<std::string> pieces;
    size_t next = 0;
  };

  void Run() {
    uint64_t seen = 0;  // streams added that a wait has accounted for
    while (true) {
      std::vector<Stream> due;
      bool fail_all;
      {
        absl::MutexLock lock(&mu_);
        // Wakes for a new stream, a stop, a cancellation, or the earliest
        // due piece.
        const absl::Time wake =
            streams_.empty() ? absl::InfiniteFuture() : streams_.begin()->first;
        struct Args {
          Pacer* pacer;
          uint64_t seen;
        } args{this, seen};
        mu_.AwaitWithDeadline(
            absl::Condition(
                +[](Args* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->pacer->mu_) {
                  Pacer& p = *a->pacer;
                  return p.stopping_ ||
                         (p.cancel_all_ && !p.streams_.empty()) ||
                         p.added_ != a->seen;
                },
                &args),
            wake);
        seen = added_;
        if (stopping_ && streams_.empty()) return;
        fail_all = stopping_ || cancel_all_;
        const absl::Time now = absl::Now();
        while (!streams_.empty() &&
               (fail_all || streams_.begin()->first <= now)) {
          due.push_back(std::move(streams_.extract(streams_.begin()).mapped()));
        }
      }
      std::vector<Stream> again;
      for (Stream& stream : due) {
        if (Step(stream, fail_all)) again.push_back(std::move(stream));
      }
      if (again.empty()) continue;
      const absl::Time next = absl::Now() + delay_;
      absl::MutexLock lock(&mu_);
      for (Stream& stream : again) streams_.emplace(next, std::move(stream));
    }
  }

  // Reports the stream's next piece, and ends it (done) after its last:
  // true if it goes on.
  bool Step(Stream& stream, bool fail_all) {
    if (fail_all) {
      stream.done(absl::UnavailableError("the coach is shutting down"));
      return false;
    }
    if (stream.request.cancellation != nullptr &&
        stream.request.cancellation->IsCancelled()) {
      stream.done(absl::CancelledError("the caller stopped waiting"));
      return false;
    }
    if (stream.next < stream.pieces.size()) {
      stream.request.on_delta(stream.pieces[stream.next++]);
    }
    if (stream.next < stream.pieces.size()) return true;
    stream.done(std::move(stream.reply));
    return false;
  }

  const absl::Duration delay_;
  absl::Mutex mu_;
  // By when each stream's next piece is due.
  std::multimap<absl::Time, Stream> streams_ ABSL_GUARDED_BY(mu_);
  uint64_t added_ ABSL_GUARDED_BY(mu_) = 0;  // streams ever added
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_all_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest is built
};

OfflineCoach::OfflineCoach(absl::Duration piece_delay)
    : piece_delay_(piece_delay),
      pacer_(piece_delay > absl::ZeroDuration()
                 ? std::make_unique<Pacer>(piece_delay)
                 : nullptr) {}

OfflineCoach::~OfflineCoach() = default;

void OfflineCoach::StartReply(CoachRequest request, ReplyCallback done) {
  CoachReply reply = Compose(request);
  if (!request.on_delta) {
    done(std::move(reply));
    return;
  }
  if (pacer_ != nullptr) {
    pacer_->Add(std::move(request), std::move(reply), std::move(done));
    return;
  }
  for (absl::string_view piece : SentencePieces(reply.content)) {
    request.on_delta(piece);
  }
  done(std::move(reply));
}

void OfflineCoach::CancelAll() {
  if (pacer_ != nullptr) pacer_->CancelAll();
}

absl::Duration OfflineCoach::LongestReply(absl::Duration piece_delay) {
  size_t most = 0;
  const auto count = [&most](absl::string_view body) {
    if (body.empty()) return;
    most = std::max(
        most, SentencePieces(absl::StrCat(kThanksForDetails, body)).size());
  };
  for (const Theme& theme : kThemes) {
    count(theme.reply);
    count(theme.follow_up);
  }
  count(kDefaultTheme.reply);
  count(kDefaultTheme.follow_up);
  // The first piece goes at once, each next one `piece_delay` later.
  return piece_delay * static_cast<int64_t>(most > 0 ? most - 1 : 0);
}

CoachReply OfflineCoach::Compose(const CoachRequest& request) {
  // The message to answer is the last user turn; the user turns before it
  // are the context.
  const auto& conversation = request.conversation;
  size_t last_user = conversation.size();
  size_t user_turns = 0;
  for (size_t i = 0; i < conversation.size(); ++i) {
    if (conversation[i].role != Role::kUser) continue;
    last_user = i;
    ++user_turns;
  }
  absl::string_view message;
  if (last_user < conversation.size()) {
    message = conversation[last_user].content;
  }
  const Theme& theme = Classify(message);

  bool theme_seen_before = false;
  for (size_t i = 0; i < last_user; ++i) {
    if (conversation[i].role == Role::kUser &&
        Classify(conversation[i].content).id == theme.id) {
      theme_seen_before = true;
      break;
    }
  }

  const absl::string_view body = theme_seen_before && !theme.follow_up.empty()
                                     ? theme.follow_up
                                     : theme.reply;
  // From the second user message on, the user is adding details.
  const bool continues_conversation = user_turns > 1;
  const absl::string_view thanks =
      continues_conversation && theme.thanks_for_details ? kThanksForDetails
                                                         : "";
  CoachReply reply;
  reply.content = absl::StrCat(thanks, body);
  return reply;
}

}  // namespace coach
