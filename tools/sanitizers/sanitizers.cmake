# Sanitizer builds, for the tests (tools/test.sh runs both):
#   -DCOACH_SANITIZE=address  AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer
#   -DCOACH_SANITIZE=thread   ThreadSanitizer
# The flags apply to every target of this project (compile and link); the
# Debian libraries we link (gRPC, Abseil, protobuf, SQLite, libcurl) stay
# uninstrumented. Every executable also gets tools/sanitizers/runtime_options.cc
# (the runtime's default options and our suppression files) and, for TSan,
# absl_tsan_shim.cc, which makes TSan see absl::Mutex: read its header.
set(COACH_SANITIZE "" CACHE STRING
    "Build with sanitizers: empty, 'address' (ASan+UBSan) or 'thread' (TSan)")
set_property(CACHE COACH_SANITIZE PROPERTY STRINGS "" address thread)

if(COACH_SANITIZE STREQUAL "address")
  set(COACH_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
      -fno-sanitize-recover=undefined)
elseif(COACH_SANITIZE STREQUAL "thread")
  # -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence, which
  # absl's flags use (absl::GetFlag's SequenceLock, inlined into our code).
  # Its data words are read with relaxed atomics, so TSan sees no race there.
  set(COACH_SANITIZER_FLAGS -fsanitize=thread -Wno-tsan)
elseif(NOT COACH_SANITIZE STREQUAL "")
  message(FATAL_ERROR "COACH_SANITIZE must be empty, 'address' or 'thread', "
                      "not '${COACH_SANITIZE}'")
endif()

if(COACH_SANITIZE)
  add_compile_options(${COACH_SANITIZER_FLAGS})
  add_link_options(${COACH_SANITIZER_FLAGS})
  if(COACH_SANITIZE STREQUAL "thread")
    # The shim's definitions must be in the executable's dynamic symbol table
    # for libgrpc's (and libabsl's own) calls to reach them.
    foreach(glob _ZN4absl*5Mutex* _ZN4absl*7CondVar* _ZN4absl*12Notification*
                 _ZNK4absl*12Notification*)
      add_link_options("LINKER:--export-dynamic-symbol=${glob}")
    endforeach()
  endif()
endif()

# Called once at the end of the top-level CMakeLists.txt: gives every
# executable of the project the sanitizer runtime support objects.
function(coach_sanitizer_support)
  if(NOT COACH_SANITIZE)
    return()
  endif()
  set(sources ${PROJECT_SOURCE_DIR}/tools/sanitizers/runtime_options.cc)
  if(COACH_SANITIZE STREQUAL "thread")
    list(APPEND sources ${PROJECT_SOURCE_DIR}/tools/sanitizers/absl_tsan_shim.cc)
  endif()
  add_library(coach_sanitizer_support OBJECT ${sources})
  target_link_libraries(coach_sanitizer_support PRIVATE absl::synchronization)
  target_compile_definitions(coach_sanitizer_support PRIVATE
    COACH_SANITIZER_DIR="${PROJECT_SOURCE_DIR}/tools/sanitizers")

  set(dirs ${PROJECT_SOURCE_DIR})
  while(dirs)
    list(POP_FRONT dirs dir)
    get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
    list(APPEND dirs ${subdirs})
    get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
    foreach(target IN LISTS targets)
      get_target_property(type ${target} TYPE)
      if(type STREQUAL "EXECUTABLE")
        target_sources(${target} PRIVATE
                       $<TARGET_OBJECTS:coach_sanitizer_support>)
      endif()
    endforeach()
  endwhile()
endfunction()
