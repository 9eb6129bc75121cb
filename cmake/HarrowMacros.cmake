# harrow_generate_cpp: capnp's C++ code plus capnpc-harrow's bindings for Cap'n Proto schemas.
#
#   find_package(Harrow REQUIRED)
#   harrow_generate_cpp(KV_SRCS KV_HDRS kv.capnp)
#   add_executable(kv main.c++ ${KV_SRCS})
#   target_include_directories(kv PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
#   target_link_libraries(kv PRIVATE Harrow::harrow)
#
# For each schema x.capnp, SRCS gets x.capnp.c++ and x.capnp.harrow.c++ and HDRS gets
# x.capnp.h and x.capnp.harrow.h (FooActor::Server and FooActor::Portal for every interface
# marked $Harrow.actor). Schemas import harrow's annotations as `import "/harrow/actor.capnp"`:
# HARROW_IDL_DIR is on the import path.
#
# The same optional variables as capnp's own capnp_generate_cpp:
#   CAPNPC_OUTPUT_DIR   where the generated files go (default: CMAKE_CURRENT_BINARY_DIR), at
#                       their path relative to CAPNPC_SRC_PREFIX
#   CAPNPC_SRC_PREFIX   the schemas' source prefix (default: CMAKE_CURRENT_SOURCE_DIR)
#   CAPNPC_IMPORT_DIRS  more directories for the import path
#   CAPNPC_FLAGS        more flags for `capnp compile`

function(harrow_generate_cpp SOURCES HEADERS)
  if(NOT ARGN)
    message(SEND_ERROR "harrow_generate_cpp() called without any schema file.")
    return()
  endif()
  if(NOT CAPNP_EXECUTABLE OR NOT CAPNPC_CXX_EXECUTABLE OR NOT CAPNP_INCLUDE_DIRECTORY)
    message(SEND_ERROR "harrow_generate_cpp() needs find_package(CapnProto) (capnp, capnpc-c++ "
                       "and capnp's schemas: CAPNP_EXECUTABLE, CAPNPC_CXX_EXECUTABLE, "
                       "CAPNP_INCLUDE_DIRECTORY).")
    return()
  endif()
  if(NOT TARGET Harrow::capnpc-harrow OR NOT HARROW_IDL_DIR)
    message(SEND_ERROR "harrow_generate_cpp() needs find_package(Harrow) (Harrow::capnpc-harrow, "
                       "HARROW_IDL_DIR).")
    return()
  endif()

  set(src_prefix "${CMAKE_CURRENT_SOURCE_DIR}")
  if(DEFINED CAPNPC_SRC_PREFIX)
    set(src_prefix "${CAPNPC_SRC_PREFIX}")
  endif()
  get_filename_component(src_prefix "${src_prefix}" ABSOLUTE)
  set(output_dir "${CMAKE_CURRENT_BINARY_DIR}")
  if(DEFINED CAPNPC_OUTPUT_DIR)
    set(output_dir "${CAPNPC_OUTPUT_DIR}")
  endif()
  get_filename_component(output_dir "${output_dir}" ABSOLUTE)

  set(import_path -I "${src_prefix}" -I "${HARROW_IDL_DIR}" -I "${CAPNP_INCLUDE_DIRECTORY}")
  foreach(directory IN LISTS CAPNPC_IMPORT_DIRS)
    get_filename_component(directory "${directory}" ABSOLUTE)
    list(APPEND import_path -I "${directory}")
  endforeach()

  set(sources)
  set(headers)
  foreach(schema IN LISTS ARGN)
    get_filename_component(schema_path "${schema}" ABSOLUTE)
    if(NOT EXISTS "${schema_path}")
      message(FATAL_ERROR "Cap'n Proto schema '${schema_path}' does not exist.")
    endif()
    file(RELATIVE_PATH relative "${src_prefix}" "${schema_path}")
    if(relative MATCHES "^\\.\\./")
      message(FATAL_ERROR "Schema '${schema_path}' is not under CAPNPC_SRC_PREFIX "
                          "'${src_prefix}'.")
    endif()
    set(base "${output_dir}/${relative}")
    add_custom_command(
      OUTPUT "${base}.c++" "${base}.h" "${base}.harrow.c++" "${base}.harrow.h"
      COMMAND "${CMAKE_COMMAND}" -E make_directory "${output_dir}"
      # (capnp warns when PWD, inherited from the shell, is not the directory it runs in.)
      COMMAND "${CMAKE_COMMAND}" -E env --unset=PWD
              "${CAPNP_EXECUTABLE}" compile ${import_path} --no-standard-import
              --src-prefix "${src_prefix}"
              "-o${CAPNPC_CXX_EXECUTABLE}:${output_dir}"
              "-o$<TARGET_FILE:Harrow::capnpc-harrow>:${output_dir}"
              ${CAPNPC_FLAGS} "${schema_path}"
      DEPENDS "${schema_path}" Harrow::capnpc-harrow
      COMMENT "Compiling Cap'n Proto schema ${schema} (C++ and harrow)"
      VERBATIM)
    list(APPEND sources "${base}.c++" "${base}.harrow.c++")
    list(APPEND headers "${base}.h" "${base}.harrow.h")
  endforeach()

  set_source_files_properties(${sources} ${headers} PROPERTIES GENERATED TRUE)
  set(${SOURCES} ${sources} PARENT_SCOPE)
  set(${HEADERS} ${headers} PARENT_SCOPE)
endfunction()
