# Build speed; none of it changes what is built. tools/test.sh (CI) builds
# with all of it; docs/adr/0062-ci-build-time.md has the figures.
#
# COACH_LINKER (mold, lld, bfd or gold; default: mold if installed, else the
# compiler's default): the linker, through -fuse-ld. mold links the test
# executables several times faster than GNU ld. Debian's mold package
# (tools/setup.sh installs it); a build without it links with the default.
set(COACH_LINKER "" CACHE STRING
    "Linker for -fuse-ld= (empty: mold when installed, else the default)")
if(COACH_LINKER STREQUAL "")
  find_program(COACH_MOLD mold)
  if(COACH_MOLD)
    set(COACH_LINKER_USED mold)
  endif()
else()
  set(COACH_LINKER_USED ${COACH_LINKER})
endif()
if(COACH_LINKER_USED)
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_LINK_OPTIONS -fuse-ld=${COACH_LINKER_USED})
  check_cxx_source_compiles("int main() { return 0; }"
                            COACH_LINKER_${COACH_LINKER_USED}_WORKS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(COACH_LINKER_${COACH_LINKER_USED}_WORKS)
    add_link_options(-fuse-ld=${COACH_LINKER_USED})
    message(STATUS "Linker: ${COACH_LINKER_USED}")
  elseif(COACH_LINKER)
    message(FATAL_ERROR "COACH_LINKER=${COACH_LINKER}: -fuse-ld=${COACH_LINKER} "
                        "does not link")
  endif()
endif()

# COACH_CCACHE (default ON): compile through ccache when installed (Debian's
# ccache; tools/setup.sh installs it), unless CMAKE_CXX_COMPILER_LAUNCHER is
# set. It pays on a rebuild; a first build (a clean CI machine) gains nothing.
# In its depend mode (CCACHE_DEPEND=1) ccache reads the compiler's own -MD
# dependency file instead of running the preprocessor first: a miss costs
# nothing measurable, where the default mode added 7 % to each compile.
option(COACH_CCACHE "Compile through ccache when installed" ON)
if(COACH_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(COACH_CCACHE_PROGRAM ccache)
  find_program(COACH_ENV_PROGRAM env)
  if(COACH_CCACHE_PROGRAM AND COACH_ENV_PROGRAM)
    set(CMAKE_CXX_COMPILER_LAUNCHER
        ${COACH_ENV_PROGRAM} CCACHE_DEPEND=1 ${COACH_CCACHE_PROGRAM})
    message(STATUS "Compiler launcher: ccache (depend mode)")
  endif()
endif()

# COACH_UNITY_BUILD (default OFF): each library and each test executable
# compiles as one translation unit (CMake's unity build; the few files that
# cannot join theirs say why, with SKIP_UNITY_BUILD_INCLUSION). The headers
# (gRPC, protobuf, Abseil, gtest, httplib) are parsed and their inline code
# compiled once per target instead of once per file: about half the compile
# time. A developer editing one file recompiles its whole target, so it is off
# unless asked for (tools/test.sh asks); a plain build also keeps every file
# compiling on its own includes.
option(COACH_UNITY_BUILD "Compile each target as one translation unit" OFF)
set(CMAKE_UNITY_BUILD ${COACH_UNITY_BUILD})
set(CMAKE_UNITY_BUILD_BATCH_SIZE 0)
if(COACH_UNITY_BUILD)
  # A .cc included by a unity source is no longer its unit's main file, so
  # GCC takes it for a header and warns where a class of a header has a
  # member of a file-local type (JwtVerifier::Keys, upstream.cc's classes).
  # That is right in the .cc itself: the build without unity still checks it.
  add_compile_options(-Wno-subobject-linkage)
endif()
