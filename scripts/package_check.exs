# Builds a consumer app against exactly the files Hotpath would ship as a package.
#
#     mix run --no-compile --no-start scripts/package_check.exs
#
# 1. Expands `package[:files]` from mix.exs the way Hex does (a directory means all files in
#    it) and copies exactly those files to <tmp>/vendor/hotpath.
# 2. Puts a Cargo `[workspace]` manifest at <tmp>, the consumer's repository root, to prove
#    the build is not captured by a host workspace.
# 3. Copies test/fixtures/consumer to <tmp>/consumer and test/fixtures/plug (a stand-in for
#    the Plug package: the real one cannot be installed here) to <tmp>/plug, and checks the
#    three ways a user's build meets Hotpath, each from a clean _build:
#      a. the app with Plug and Hotpath compiled together;
#      b. Hotpath recompiled alone (`mix deps.compile hotpath --force`);
#      c. Hotpath compiled first, Plug added afterwards.
#    In each, both Plug adapters exist, a request through Hotpath.RateLimiter.Plug gets 429
#    after the limit, and no compile prints a warning.
#
# Where cargo is on PATH the consumer builds the NIF from the copied sources (and the checks
# of a missing or old cargo and of HOTPATH_NIF_PATH run too). Where it is not (the Debian
# lanes of `make test-modern`), the consumer installs the prebuilt NIF named by
# HOTPATH_NIF_PATH, and the source build is left to the host lane.
#
# 4. Precompiled NIFs, on both lanes: `mix hotpath.native.package` run in the package copy
#    builds the host's artifact (with cargo, or `--from HOTPATH_NIF_PATH` where there is none)
#    and records its checksum in the copy's checksum-hotpath_nif.exs, as a release does. A
#    loopback :inets httpd serves it, and the consumer compiles with cargo unreachable
#    (HOTPATH_CARGO pointing nowhere, cargo off PATH) and a temporary HOTPATH_CACHE_DIR:
#      1. a clean compile downloads, verifies and installs it, and the consumer calls the NIF;
#      2. with the server stopped, a rebuild installs it from the cache;
#      3. a tampered artifact (one byte flipped, cache empty) is refused with both sums and its
#         name, and nothing is installed or cached;
#      4. a checksum file without this target: the clear error without cargo; with cargo (host
#         lane), a source build.
defmodule PackageCheck do
  @root File.cwd!()

  def run do
    files = packaged_files()
    check_contents!(files)

    tmp =
      Path.join(System.tmp_dir!(), "hotpath_package_check_#{System.unique_integer([:positive])}")

    vendor = Path.join(tmp, "vendor/hotpath")
    consumer = Path.join(tmp, "consumer")
    plug = Path.join(tmp, "plug")

    try do
      for file <- files do
        dest = Path.join(vendor, file)
        File.mkdir_p!(Path.dirname(dest))
        File.cp!(Path.join(@root, file), dest)
      end

      File.write!(Path.join(tmp, "Cargo.toml"), "[workspace]\nresolver = \"2\"\nmembers = []\n")

      for {fixture, dest} <- [{"consumer", consumer}, {"plug", plug}] do
        File.cp_r!(Path.join(@root, "test/fixtures/" <> fixture), dest)
        File.rm_rf!(Path.join(dest, "_build"))
        File.rm_rf!(Path.join(dest, "deps"))
      end

      IO.puts("package_check: #{length(files)} packaged files copied to #{vendor}")

      env = [
        {"HOTPATH_PACKAGE_DIR", vendor},
        {"CONSUMER_PLUG_DIR", plug},
        {"CONSUMER_PLUG", nil},
        {"MIX_ENV", "dev"},
        # The consumer builds with the packaged defaults, never with this repo's settings.
        {"HOTPATH_NIF_PATH", nil},
        {"HOTPATH_BUILD", nil},
        {"HOTPATH_NIF_BASE_URL", nil},
        # Never the user's real download cache.
        {"HOTPATH_CACHE_DIR", Path.join(tmp, "nif-cache")},
        {"HOTPATH_CARGO_TARGET_DIR", nil},
        {"HOTPATH_CARGO_PROFILE", nil},
        {"MIX_BUILD_ROOT", nil},
        {"MIX_BUILD_PATH", nil}
      ]

      check_cargo_errors!(consumer, env)

      case System.find_executable("cargo") do
        nil ->
          prebuilt =
            System.get_env("HOTPATH_NIF_PATH") || fail!("no cargo and no HOTPATH_NIF_PATH")

          IO.puts(
            "package_check: no cargo here: the consumer installs HOTPATH_NIF_PATH=#{prebuilt}"
          )

          env = List.keystore(env, "HOTPATH_NIF_PATH", 0, {"HOTPATH_NIF_PATH", prebuilt})
          user_flows!(consumer, env)

        _cargo ->
          user_flows!(consumer, env)
          source_build_checks!(tmp, vendor, consumer, env)
      end

      precompiled_checks!(tmp, vendor, consumer, env)

      IO.puts("package_check: ok (consumer built from the package files and called the NIF)")
    after
      File.rm_rf!(tmp)
    end
  end

  # The three build orders of a user's app (see the top of this file).
  defp user_flows!(consumer, env) do
    build = Path.join(consumer, "_build")

    IO.puts("package_check: (a) Plug and Hotpath compiled together")
    File.rm_rf!(build)
    compile_clean!(consumer, ["compile"], env)
    mix!(consumer, ["run", "-e", "Consumer.check!()"], env)

    IO.puts("package_check: (b) Hotpath recompiled alone")
    compile_clean!(consumer, ["deps.compile", "hotpath", "--force"], env)
    compile_clean!(consumer, ["compile"], env)
    mix!(consumer, ["run", "-e", "Consumer.check!()"], env)

    IO.puts("package_check: (c) Hotpath compiled first, Plug added afterwards")
    File.rm_rf!(build)
    without_plug = List.keystore(env, "CONSUMER_PLUG", 0, {"CONSUMER_PLUG", "off"})
    compile_clean!(consumer, ["compile"], without_plug)
    mix!(consumer, ["run", "-e", "Consumer.check!()"], without_plug)
    compile_clean!(consumer, ["compile"], env)
    mix!(consumer, ["run", "-e", "Consumer.check!()"], env)
  end

  # The NIF built by the consumer from the packaged sources with cargo.
  defp source_build_checks!(tmp, vendor, consumer, env) do
    # Nothing changed: the native compiler must not run cargo again.
    {out, 0} = mix(consumer, ["compile"], env)
    if out =~ "Compiling hotpath_nif", do: fail!("a second `mix compile` rebuilt the NIF")
    IO.puts("package_check: second compile is a no-op")

    if not File.dir?(Path.join(vendor, "target")) do
      fail!("the NIF was not built inside the package copy")
    end

    # HOTPATH_NIF_PATH installs a prebuilt library instead of building.
    prebuilt = Path.join(tmp, "prebuilt_hotpath_nif.so")
    File.cp!(Path.join(vendor, "target/release/libhotpath_nif.so"), prebuilt)
    File.rm_rf!(Path.join(consumer, "_build/dev/lib/hotpath/priv"))
    env = List.keystore(env, "HOTPATH_NIF_PATH", 0, {"HOTPATH_NIF_PATH", prebuilt})
    {out, 0} = mix(consumer, ["run", "-e", "Consumer.check!()"], env)
    if not (out =~ "Installing prebuilt"), do: fail!("HOTPATH_NIF_PATH was not used:\n#{out}")
    IO.puts("package_check: HOTPATH_NIF_PATH installs the prebuilt library")
  end

  # The precompiled-NIF flows (see the top of this file).
  defp precompiled_checks!(tmp, vendor, consumer, env) do
    dist = Path.join(tmp, "dist")
    cache = Path.join(tmp, "nif-cache")
    checksum_file = Path.join(vendor, "checksum-hotpath_nif.exs")
    cargo = System.find_executable("cargo")

    package =
      if cargo,
        do: ["hotpath.native.package", "--out", dist],
        else: [
          "hotpath.native.package",
          "--out",
          dist,
          "--from",
          System.fetch_env!("HOTPATH_NIF_PATH")
        ]

    IO.puts("package_check: (in the package copy) mix #{Enum.join(package, " ")}")

    case mix(vendor, package, env) do
      {_, 0} -> :ok
      {out, status} -> fail!("mix hotpath.native.package exited with #{status}:\n#{out}")
    end

    {checksums, _} = Code.eval_file(checksum_file)
    [{name, sum}] = Map.to_list(checksums)
    artifact = Path.join(dist, name)

    if not (name =~ ~r/^hotpath_nif-v[^-]+-nif-2\.\d+-[a-z0-9_]+-.+\.so\.tar\.gz$/ and
              File.regular?(artifact)) do
      fail!("unexpected artifact #{name} (#{inspect(File.ls(dist))})")
    end

    IO.puts("package_check: packaged #{name} (#{sum})")

    installed = Path.join(consumer, "_build/dev/lib/hotpath/priv/native/hotpath_nif.so")
    cached = Path.join(cache, name)
    {server, url} = serve!(tmp, dist)

    no_cargo =
      Enum.reduce(
        [
          {"HOTPATH_NIF_BASE_URL", url},
          {"HOTPATH_CACHE_DIR", cache},
          {"HOTPATH_CARGO", Path.join(tmp, "no-cargo-here")},
          {"PATH", path_without_cargo()}
        ],
        env,
        fn {key, _} = pair, acc -> List.keystore(acc, key, 0, pair) end
      )

    IO.puts("package_check: (1) a clean compile downloads, verifies and installs the NIF")
    File.rm_rf!(Path.join(consumer, "_build"))
    out = compile_clean!(consumer, ["compile"], no_cargo)
    expect_output!(out, "Installing precompiled #{name} (checksum verified) from #{url}/#{name}")
    mix!(consumer, ["run", "-e", "Consumer.check!()"], no_cargo)
    File.regular?(cached) || fail!("the download was not cached at #{cached}")

    IO.puts("package_check: (2) server stopped: the rebuild installs from the cache")
    :ok = :inets.stop(:httpd, server)
    File.rm!(installed)
    out = compile_clean!(consumer, ["deps.compile", "hotpath"], no_cargo)
    expect_output!(out, "Installing precompiled #{name} (checksum verified) from the cache")
    mix!(consumer, ["run", "-e", "Consumer.check!()"], no_cargo)

    IO.puts("package_check: (3) a tampered artifact is refused and nothing is installed")
    good = File.read!(artifact)
    half = div(byte_size(good), 2)
    flipped = Bitwise.bxor(:binary.at(good, half), 1)
    rest = binary_part(good, half + 1, byte_size(good) - half - 1)
    File.write!(artifact, [binary_part(good, 0, half), flipped, rest])

    tampered_sum =
      "sha256:" <> Base.encode16(:crypto.hash(:sha256, File.read!(artifact)), case: :lower)

    File.rm_rf!(cache)
    File.rm!(installed)
    {server, url} = serve!(tmp, dist)
    no_cargo = List.keystore(no_cargo, "HOTPATH_NIF_BASE_URL", 0, {"HOTPATH_NIF_BASE_URL", url})
    out = expect_failure!(consumer, ["deps.compile", "hotpath"], no_cargo, "checksum mismatch")
    for part <- [name, sum, tampered_sum], do: expect_output!(out, part)
    if File.exists?(installed), do: fail!("a tampered artifact was installed at #{installed}")
    if File.exists?(cached), do: fail!("a tampered artifact was cached at #{cached}")
    :ok = :inets.stop(:httpd, server)
    File.write!(artifact, good)

    IO.puts("package_check: (4) no artifact listed for this target")

    other =
      String.replace(
        name,
        ~r/-nif-(2\.\d+)-.*\.so\.tar\.gz$/,
        "-nif-\\1-sparc64-unknown-linux-gnu.so.tar.gz"
      )

    File.write!(checksum_file, inspect(%{other => sum}))
    [_, target] = Regex.run(~r/-nif-2\.\d+-(.*)\.so\.tar\.gz$/, name)
    out = expect_failure!(consumer, ["deps.compile", "hotpath"], no_cargo, "Hotpath needs cargo")

    for part <- [~s(target "#{target}"), "HOTPATH_NIF_PATH", "HOTPATH_BUILD=1", "rustup"],
        do: expect_output!(out, part)

    if File.exists?(installed), do: fail!("something was installed at #{installed}")

    if cargo do
      out = compile_clean!(consumer, ["deps.compile", "hotpath"], env)
      expect_output!(out, "Building hotpath_nif from source: no precompiled #{name} is listed")
      mix!(consumer, ["run", "-e", "Consumer.check!()"], env)
    else
      IO.puts("package_check: no cargo here: the source build of (4) runs on the host lane")
    end
  end

  # A loopback HTTP server for `dir`, on a free port.
  defp serve!(tmp, dir) do
    if function_exported?(Mix, :ensure_application!, 1),
      do: apply(Mix, :ensure_application!, [:inets])

    {:ok, _} = Application.ensure_all_started(:inets)
    root = Path.join(tmp, "httpd")
    File.mkdir_p!(root)

    {:ok, pid} =
      :inets.start(:httpd,
        port: 0,
        bind_address: {127, 0, 0, 1},
        server_name: ~c"package-check",
        server_root: String.to_charlist(root),
        document_root: String.to_charlist(dir),
        modules: [:mod_get],
        mime_types: [{~c"gz", ~c"application/gzip"}]
      )

    {pid, "http://127.0.0.1:#{:httpd.info(pid)[:port]}"}
  end

  defp path_without_cargo do
    dirs = String.split(System.get_env("PATH", ""), ":")

    mix_dirs = Enum.map(~w(mix elixir erl), &Path.dirname(System.find_executable(&1)))

    # HOTPATH_CARGO pointing nowhere already hides cargo; its directory stays on PATH only
    # when Elixir lives there too.
    case System.find_executable("cargo") do
      nil -> Enum.join(dirs, ":")
      cargo -> Enum.join(dirs -- ([Path.dirname(cargo)] -- mix_dirs), ":")
    end
  end

  defp expect_output!(out, expected) do
    if not (out =~ expected), do: fail!("expected #{inspect(expected)} in:\n#{out}")
  end

  # Runs a compiling mix command; fails if it prints any warning.
  defp compile_clean!(dir, args, env) do
    IO.puts("package_check: (in #{Path.basename(dir)}) mix #{Enum.join(args, " ")}")

    case mix(dir, args, env) do
      {out, 0} ->
        case Regex.scan(~r/^.*warning.*$/mi, out) do
          [] ->
            out

          lines ->
            fail!("mix #{Enum.join(args, " ")} printed warnings:\n#{out}\n#{inspect(lines)}")
        end

      {out, status} ->
        fail!("mix #{Enum.join(args, " ")} exited with #{status}:\n#{out}")
    end
  end

  defp packaged_files do
    Mix.Project.config()[:package][:files]
    |> Enum.flat_map(fn entry ->
      case Path.wildcard(Path.join(@root, entry), match_dot: true) do
        [] -> fail!("package file #{entry} does not exist")
        paths -> paths
      end
    end)
    |> Enum.flat_map(fn path ->
      if File.dir?(path),
        do:
          Path.wildcard(Path.join(path, "**"), match_dot: true) |> Enum.filter(&File.regular?/1),
        else: [path]
    end)
    |> Enum.map(&Path.relative_to(&1, @root))
    |> Enum.uniq()
    |> Enum.sort()
  end

  defp check_contents!(files) do
    forbidden = Enum.filter(files, &String.match?(&1, ~r{(^|/)(target|_build|deps|priv)/}))
    if forbidden != [], do: fail!("build outputs in the package: #{inspect(forbidden)}")

    required = ~w(mix.exs Cargo.toml Cargo.lock README.md LICENSE CHANGELOG.md
         checksum-hotpath_nif.exs lib/mix/hotpath_native/target.exs
         lib/mix/hotpath_native/artifact.exs lib/mix/hotpath_native/fetch.exs
         lib/mix/hotpath_native/cargo.exs lib/mix/hotpath_native/package_task.exs
         native/hotpath_core/Cargo.toml native/hotpath_nif/Cargo.toml lib/hotpath.ex)

    missing = required -- files
    if missing != [], do: fail!("missing from the package: #{inspect(missing)}")
  end

  # Without cargo, or with one too old, compiling the dependency fails with one readable message.
  defp check_cargo_errors!(consumer, env) do
    mix_dirs = Enum.map(~w(mix elixir erl), &Path.dirname(System.find_executable(&1)))

    case System.find_executable("cargo") do
      nil ->
        expect_failure!(consumer, env, "Hotpath needs cargo")

      cargo ->
        cargo_dir = Path.dirname(cargo)

        if cargo_dir in mix_dirs do
          IO.puts(
            "package_check: SKIPPED the no-cargo check: cargo shares #{cargo_dir} with Elixir"
          )
        else
          path = Enum.join(Enum.uniq(mix_dirs ++ ["/usr/bin", "/bin"]) -- [cargo_dir], ":")
          expect_failure!(consumer, [{"PATH", path} | env], "Hotpath needs cargo")
        end
    end

    fake = Path.join(Path.dirname(consumer), "old-cargo")
    File.write!(fake, "#!/bin/sh\necho 'cargo 1.80.0 (abcdef 2024-07-01)'\n")
    File.chmod!(fake, 0o755)
    expect_failure!(consumer, [{"HOTPATH_CARGO", fake} | env], "is cargo 1.80.0")
  end

  defp expect_failure!(consumer, env, expected),
    do: expect_failure!(consumer, ["compile"], env, expected)

  defp expect_failure!(consumer, args, env, expected) do
    case mix(consumer, args, env) do
      {out, status} when status != 0 ->
        if not (out =~ expected), do: fail!("expected #{inspect(expected)} in:\n#{out}")
        [line] = Regex.run(~r/\*\* \(Mix\) .*/, out)
        IO.puts("package_check: readable failure as expected: #{line}")
        out

      {out, 0} ->
        fail!("mix #{Enum.join(args, " ")} should have failed with #{inspect(expected)}:\n#{out}")
    end
  end

  defp mix(dir, args, env) do
    System.cmd("mix", args, cd: dir, env: env, stderr_to_stdout: true)
  end

  defp mix!(dir, args, env) do
    IO.puts("package_check: (in #{Path.basename(dir)}) mix #{Enum.join(args, " ")}")

    case System.cmd("mix", args, cd: dir, env: env, stderr_to_stdout: true, into: IO.stream()) do
      {_, 0} -> :ok
      {_, status} -> fail!("mix #{Enum.join(args, " ")} exited with #{status}")
    end
  end

  defp fail!(message), do: Mix.raise("package_check FAILED: #{message}")
end

PackageCheck.run()
