# Builds a consumer app against exactly the files Hotpath would ship as a package.
#
#     mix run --no-compile --no-start scripts/package_check.exs
#
# 1. Expands `package[:files]` from mix.exs the way Hex does (a directory means all files in
#    it) and copies exactly those files to <tmp>/vendor/hotpath.
# 2. Puts a Cargo `[workspace]` manifest at <tmp>, the consumer's repository root, to prove
#    the build is not captured by a host workspace.
# 3. Copies test/fixtures/consumer to <tmp>/consumer, compiles it (which builds the NIF from
#    the copied sources) and calls into the NIF.
defmodule PackageCheck do
  @root File.cwd!()

  def run do
    files = packaged_files()
    check_contents!(files)

    tmp =
      Path.join(System.tmp_dir!(), "hotpath_package_check_#{System.unique_integer([:positive])}")

    vendor = Path.join(tmp, "vendor/hotpath")
    consumer = Path.join(tmp, "consumer")

    try do
      for file <- files do
        dest = Path.join(vendor, file)
        File.mkdir_p!(Path.dirname(dest))
        File.cp!(Path.join(@root, file), dest)
      end

      File.write!(Path.join(tmp, "Cargo.toml"), "[workspace]\nresolver = \"2\"\nmembers = []\n")
      File.cp_r!(Path.join(@root, "test/fixtures/consumer"), consumer)
      File.rm_rf!(Path.join(consumer, "_build"))
      File.rm_rf!(Path.join(consumer, "deps"))

      IO.puts("package_check: #{length(files)} packaged files copied to #{vendor}")

      env = [
        {"HOTPATH_PACKAGE_DIR", vendor},
        {"MIX_ENV", "dev"},
        # The consumer builds with the packaged defaults, never with this repo's settings.
        {"HOTPATH_NIF_PATH", nil},
        {"HOTPATH_CARGO_TARGET_DIR", nil},
        {"HOTPATH_CARGO_PROFILE", nil}
      ]

      check_cargo_errors!(consumer, env)

      mix!(consumer, ["compile"], env)
      mix!(consumer, ["run", "-e", "Consumer.check!()"], env)

      # Nothing changed: the native compiler must not run cargo again.
      {out, 0} = mix(consumer, ["compile"], env)
      if out =~ "Compiling hotpath_nif", do: fail!("a second `mix compile` rebuilt the NIF")
      IO.puts("package_check: second compile is a no-op")

      # HOTPATH_NIF_PATH installs a prebuilt library instead of building.
      prebuilt = Path.join(tmp, "prebuilt_hotpath_nif.so")
      File.cp!(Path.join(vendor, "target/release/libhotpath_nif.so"), prebuilt)
      File.rm_rf!(Path.join(consumer, "_build/dev/lib/hotpath/priv"))
      env = List.keystore(env, "HOTPATH_NIF_PATH", 0, {"HOTPATH_NIF_PATH", prebuilt})
      {out, 0} = mix(consumer, ["run", "-e", "Consumer.check!()"], env)
      unless out =~ "Installing prebuilt", do: fail!("HOTPATH_NIF_PATH was not used:\n#{out}")
      IO.puts("package_check: HOTPATH_NIF_PATH installs the prebuilt library")

      unless File.dir?(Path.join(vendor, "target")) do
        fail!("the NIF was not built inside the package copy")
      end

      IO.puts("package_check: ok (consumer built from the package files and called the NIF)")
    after
      File.rm_rf!(tmp)
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
         native/hotpath_core/Cargo.toml native/hotpath_nif/Cargo.toml lib/hotpath.ex)

    missing = required -- files
    if missing != [], do: fail!("missing from the package: #{inspect(missing)}")
  end

  # Without cargo, or with one too old, compiling the dependency fails with one readable message.
  defp check_cargo_errors!(consumer, env) do
    mix_dirs = Enum.map(~w(mix elixir erl), &Path.dirname(System.find_executable(&1)))
    cargo_dir = Path.dirname(System.find_executable("cargo"))

    if cargo_dir in mix_dirs do
      IO.puts("package_check: SKIPPED the no-cargo check: cargo shares #{cargo_dir} with Elixir")
    else
      path = Enum.join(Enum.uniq(mix_dirs ++ ["/usr/bin", "/bin"]) -- [cargo_dir], ":")
      expect_failure!(consumer, [{"PATH", path} | env], "Hotpath needs cargo")
    end

    fake = Path.join(Path.dirname(consumer), "old-cargo")
    File.write!(fake, "#!/bin/sh\necho 'cargo 1.80.0 (abcdef 2024-07-01)'\n")
    File.chmod!(fake, 0o755)
    expect_failure!(consumer, [{"HOTPATH_CARGO", fake} | env], "is cargo 1.80.0")
  end

  defp expect_failure!(consumer, env, expected) do
    case mix(consumer, ["compile"], env) do
      {out, status} when status != 0 ->
        unless out =~ expected, do: fail!("expected #{inspect(expected)} in:\n#{out}")
        [line] = Regex.run(~r/\*\* \(Mix\) .*/, out)
        IO.puts("package_check: readable failure as expected: #{line}")

      {out, 0} ->
        fail!("mix compile should have failed with #{inspect(expected)}:\n#{out}")
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
