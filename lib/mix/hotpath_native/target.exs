defmodule Mix.HotpathNative.Target do
  @moduledoc false
  # Which precompiled artifact fits this machine: the Rust target triple (from
  # `:erlang.system_info(:system_architecture)`, the OS type, the word size and the C library)
  # and the NIF version (the newest one the crate is built for that this VM loads).
  #
  # Loaded by mix.exs (Code.require_file), never compiled into the :hotpath application.

  @doc "The Rust target triple of this machine: `{:ok, triple}` or `{:error, message}`."
  def current do
    from_system(
      List.to_string(:erlang.system_info(:system_architecture)),
      :os.type(),
      :erlang.system_info(:wordsize),
      libc()
    )
  end

  @doc """
  The Rust target triple for a system architecture string as the BEAM reports it
  (`"x86_64-pc-linux-gnu"`, `"aarch64-apple-darwin23.4.0"`, `"win32"`, ...).

  `libc` is `:musl`, `:gnu` or `nil` (unknown: the architecture string decides).
  """
  def from_system(arch_string, os_type, word_size, libc)

  def from_system(_arch_string, {:win32, _}, word_size, _libc) do
    case word_size do
      8 -> {:ok, "x86_64-pc-windows-msvc"}
      4 -> {:ok, "i686-pc-windows-msvc"}
      _ -> {:error, "unknown Windows word size #{inspect(word_size)}"}
    end
  end

  def from_system(arch_string, {:unix, _}, _word_size, libc) do
    case String.split(arch_string, "-") do
      [arch, _vendor, "darwin" <> _] -> {:ok, darwin_arch(arch) <> "-apple-darwin"}
      [arch, _vendor, "linux", abi] -> {:ok, linux(arch, abi, libc)}
      [arch, _vendor, "linux"] -> {:ok, linux(arch, "gnu", libc)}
      [arch, _vendor, "freebsd" <> _] -> {:ok, linux_arch(arch) <> "-unknown-freebsd"}
      _ -> {:error, "unrecognised system architecture #{inspect(arch_string)}"}
    end
  end

  defp darwin_arch(arch) when arch in ["arm", "arm64", "aarch64"], do: "aarch64"
  defp darwin_arch(_arch), do: "x86_64"

  defp linux(arch, abi, libc) do
    abi =
      case {libc, abi} do
        {:musl, "gnu" <> rest} -> "musl" <> rest
        {:gnu, "musl" <> rest} -> "gnu" <> rest
        _ -> abi
      end

    linux_arch(arch) <> "-unknown-linux-" <> abi
  end

  defp linux_arch("amd64"), do: "x86_64"
  defp linux_arch("riscv64"), do: "riscv64gc"
  defp linux_arch(arch), do: arch

  # The C library of this Linux system. A BEAM built on glibc can run on a musl system (and the
  # other way round, rarely): the system's dynamic loader decides which library loads.
  defp libc do
    case :os.type() do
      {:unix, :linux} ->
        musl? = Path.wildcard("/lib/ld-musl-*.so.1") != []
        glibc? = Path.wildcard("/lib*/ld-linux*.so.*") ++ Path.wildcard("/lib/*/ld-linux*") != []

        cond do
          musl? and not glibc? -> :musl
          glibc? and not musl? -> :gnu
          true -> nil
        end

      _ ->
        nil
    end
  end

  @doc """
  The NIF versions a crate is built for, from its Cargo.toml text: every rustler
  `nif_version_X_Y` feature it names, as `"X.Y"`, sorted.
  """
  def crate_nif_versions(cargo_toml) do
    Regex.scan(~r/"nif_version_(\d+)_(\d+)"/, cargo_toml)
    |> Enum.map(fn [_, major, minor] -> {String.to_integer(major), String.to_integer(minor)} end)
    |> Enum.uniq()
    |> Enum.sort()
    |> Enum.map(fn {major, minor} -> "#{major}.#{minor}" end)
  end

  @doc """
  The newest of `available` NIF versions that a VM of NIF version `vm` loads (same major,
  minor not above the VM's): `{:ok, version}` or `:error`.
  """
  def nif_version(vm, available) do
    [major, minor] = parse(vm)

    available
    |> Enum.map(&parse/1)
    |> Enum.filter(fn [a_major, a_minor] -> a_major == major and a_minor <= minor end)
    |> Enum.max(fn -> nil end)
    |> case do
      nil -> :error
      [a_major, a_minor] -> {:ok, "#{a_major}.#{a_minor}"}
    end
  end

  @doc "This VM's NIF version, `\"2.16\"` on OTP 25, `\"2.17\"` on OTP 26 and later."
  def vm_nif_version, do: List.to_string(:erlang.system_info(:nif_version))

  defp parse(version) do
    version |> String.split(".") |> Enum.take(2) |> Enum.map(&String.to_integer/1)
  end
end
