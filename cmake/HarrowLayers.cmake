# How CMakeLists.txt builds harrow's runtime: one library per layer folder, mirroring
# runtime/layer.bzl's harrow_layer. Not installed.

# capnp's C++ code for harrow's own schemas in idl/ (harrow_generate_cpp also runs capnpc-harrow),
# into HARROW_GENERATED_IDL.
function(harrow_idl_cpp SOURCES HEADERS)
  set(sources)
  set(headers)
  foreach(schema IN LISTS ARGN)
    set(base "${HARROW_GENERATED_IDL}/${schema}")
    add_custom_command(
      OUTPUT "${base}.c++" "${base}.h"
      COMMAND "${CMAKE_COMMAND}" -E env --unset=PWD
              "${CAPNP_EXECUTABLE}" compile -I "${HARROW_IDL_DIR}" --no-standard-import
              -I "${CAPNP_INCLUDE_DIRECTORY}" --src-prefix "${HARROW_IDL_DIR}"
              "-o${CAPNPC_CXX_EXECUTABLE}:${HARROW_GENERATED_IDL}" "${HARROW_IDL_DIR}/${schema}"
      DEPENDS "${HARROW_IDL_DIR}/${schema}"
      COMMENT "Compiling Cap'n Proto schema idl/${schema}"
      VERBATIM)
    list(APPEND sources "${base}.c++")
    list(APPEND headers "${base}.h")
  endforeach()
  set(${SOURCES} ${sources} PARENT_SCOPE)
  set(${HEADERS} ${headers} PARENT_SCOPE)
endfunction()

# Installs and exports `target` as Harrow::<export_name>, and keeps the link order for harrow.pc
# (targets are declared bottom-up, so prepending puts the top first).
function(harrow_export target export_name)
  # Shared libraries find each other next to themselves once installed (BUILD_SHARED_LIBS=ON).
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name} INSTALL_RPATH "$ORIGIN")
  add_library(Harrow::${export_name} ALIAS ${target})
  install(TARGETS ${target} EXPORT HarrowTargets
          ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}")
  get_target_property(type ${target} TYPE)
  if(NOT type STREQUAL "INTERFACE_LIBRARY")
    get_property(order GLOBAL PROPERTY HARROW_LINK_ORDER)
    get_target_property(output_name ${target} OUTPUT_NAME)
    if(NOT output_name)
      set(output_name ${target})
    endif()
    set_property(GLOBAL PROPERTY HARROW_LINK_ORDER ${output_name} ${order})
  endif()
  get_property(order GLOBAL PROPERTY HARROW_LINK_ORDER)
  set(HARROW_LINK_ORDER ${order} PARENT_SCOPE)
endfunction()

# harrow_layer(NAME DEPS targets...): the layer in runtime/NAME/ (NAME "harrow": the top files in
# runtime/ itself) as target harrow_NAME (the top: harrow). Sources are runtime/NAME/*.c++, public
# headers runtime/NAME/*.h (installed as <harrow/NAME/x.h>); subfolders such as internal/ hold
# more sources and private headers. A layer without sources is an INTERFACE library.
function(harrow_layer name)
  cmake_parse_arguments(PARSE_ARGV 1 LAYER "" "" "DEPS")
  if(name STREQUAL "harrow")
    set(folder "${PROJECT_SOURCE_DIR}/runtime")
    set(target harrow)
    set(header_prefix "harrow")
  else()
    set(folder "${PROJECT_SOURCE_DIR}/runtime/${name}")
    set(target harrow_${name})
    set(header_prefix "harrow/${name}")
  endif()
  if(name STREQUAL "harrow")
    file(GLOB sources CONFIGURE_DEPENDS "${folder}/*.c++")
  else()
    # internal/*.c++ too: a layer's subfolders are its private part.
    file(GLOB_RECURSE sources CONFIGURE_DEPENDS "${folder}/*.c++")
  endif()
  file(GLOB headers CONFIGURE_DEPENDS "${folder}/*.h")

  # The build tree's <harrow/...> for this layer: a symlink per public header, nothing else.
  set(staging "${HARROW_STAGING}/${name}")
  file(REMOVE_RECURSE "${staging}")
  file(MAKE_DIRECTORY "${staging}/${header_prefix}")
  foreach(header IN LISTS headers)
    get_filename_component(file_name "${header}" NAME)
    file(CREATE_LINK "${header}" "${staging}/${header_prefix}/${file_name}" SYMBOLIC)
  endforeach()

  if(sources)
    add_library(${target} ${sources})
    set(scope PUBLIC)
    target_compile_options(${target} PRIVATE ${HARROW_WARNINGS})
  else()
    add_library(${target} INTERFACE)
    set(scope INTERFACE)
  endif()
  target_include_directories(${target} ${scope}
    "$<BUILD_INTERFACE:${staging}>"
    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  target_link_libraries(${target} ${scope} ${LAYER_DEPS})
  target_compile_features(${target} ${scope} cxx_std_20)
  install(FILES ${headers} DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/${header_prefix}")
  harrow_export(${target} ${name})
  set(HARROW_LINK_ORDER ${HARROW_LINK_ORDER} PARENT_SCOPE)

  set_property(GLOBAL APPEND PROPERTY HARROW_LAYERS ${name})
  set_property(GLOBAL PROPERTY HARROW_LAYER_DEPS_${name} ${LAYER_DEPS})
endfunction()

# Fails the configuration when this file and the Bazel build disagree on the layers: every
# runtime/ folder with a BUILD.bazel must be a layer here, and each layer's harrow dependencies
# must be the ones its BUILD.bazel names (//runtime/X, //idl:..._capnp).
function(harrow_check_layers)
  get_property(layers GLOBAL PROPERTY HARROW_LAYERS)
  file(GLOB build_files "${PROJECT_SOURCE_DIR}/runtime/*/BUILD.bazel")
  foreach(build_file IN LISTS build_files)
    get_filename_component(folder "${build_file}" DIRECTORY)
    get_filename_component(folder "${folder}" NAME)
    if(NOT folder IN_LIST layers)
      message(FATAL_ERROR "runtime/${folder} is a layer in Bazel but not in CMakeLists.txt: add "
                          "harrow_layer(${folder} DEPS ...) with the deps of its BUILD.bazel.")
    endif()
  endforeach()

  foreach(layer IN LISTS layers)
    if(layer STREQUAL "harrow")
      set(build_file "${PROJECT_SOURCE_DIR}/runtime/BUILD.bazel")
    else()
      set(build_file "${PROJECT_SOURCE_DIR}/runtime/${layer}/BUILD.bazel")
    endif()
    file(STRINGS "${build_file}" lines REGEX "\"//(runtime|idl)[:/]")
    set(bazel_deps)
    foreach(line IN LISTS lines)
      if(line MATCHES "^[ \t]*#")
        continue()
      elseif(line MATCHES "\"//runtime/([a-z_]+)")
        list(APPEND bazel_deps "${CMAKE_MATCH_1}")
      elseif(line MATCHES "\"//runtime:harrow\"")
        list(APPEND bazel_deps harrow)
      elseif(line MATCHES "\"//idl:registry_capnp\"")
        list(APPEND bazel_deps registry_idl)
      elseif(line MATCHES "\"//idl:introspect_capnp\"")
        list(APPEND bazel_deps introspect_idl)
      elseif(line MATCHES "\"//idl:(wire|actor)_capnp\"")
        list(APPEND bazel_deps idl)
      endif()
    endforeach()
    get_property(cmake_targets GLOBAL PROPERTY HARROW_LAYER_DEPS_${layer})
    set(cmake_deps)
    foreach(dep IN LISTS cmake_targets)
      if(dep MATCHES "^harrow_(.+)$")
        list(APPEND cmake_deps "${CMAKE_MATCH_1}")
      endif()
    endforeach()
    list(REMOVE_DUPLICATES bazel_deps)
    list(SORT bazel_deps)
    list(SORT cmake_deps)
    if(NOT "${bazel_deps}" STREQUAL "${cmake_deps}")
      message(FATAL_ERROR "Layer ${layer}: ${build_file} depends on [${bazel_deps}], "
                          "CMakeLists.txt on [${cmake_deps}]; make them agree.")
    endif()
  endforeach()
endfunction()
