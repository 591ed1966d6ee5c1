defmodule Hotpath.Digest do
  @moduledoc """
  BLAKE3 and SHA-256 of binaries and iodata of any size, without blocking a scheduler.

      Hotpath.Digest.blake3("abc") |> Base.encode16(case: :lower)
      #=> "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"

  * Inputs up to `:dirty_threshold` bytes (default 64 KiB) are hashed on the calling
    scheduler: well under a millisecond, without the cost of a dirty-scheduler switch.
  * Larger inputs are hashed on dirty CPU schedulers in steps of about 10 ms (one NIF call
    each) on a native job. Binaries are hashed in place (no copy); runs of small iodata
    elements are joined into 64 KiB pieces.
  * The job monitors the calling process: if it dies (say, a `Hotpath.Compute` timeout
    killed it) the native work stops within a fraction of a millisecond.
  * With `progress: pid` (or `{pid, tag}`), `{tag, bytes_hashed, total_bytes}` is sent after
    each step (`tag` defaults to `:hotpath_digest_progress`).

  Behind a pool: `Hotpath.Compute.run(pool, fn -> Hotpath.Digest.blake3(data) end)`.
  """

  alias Hotpath.Native

  @default_threshold 64 * 1024
  # digest_small refuses more than this (the NIF's own bound for a normal scheduler): about
  # 0.3-0.5 ms for SHA-256 without SHA extensions, far less with them or for BLAKE3.
  @max_threshold 128 * 1024
  @piece 64 * 1024
  @schema [
    progress: [
      type: {:custom, __MODULE__, :progress_option, "nil, a pid or {pid, tag}"},
      default: nil,
      doc: "Sent `{tag, bytes_hashed, total_bytes}` after each dirty step"
    ],
    dirty_threshold: [
      type: {:integer, 0, @max_threshold},
      default: @default_threshold,
      doc:
        "Largest input in bytes hashed on the calling scheduler: at most a fraction of a " <>
          "millisecond on a normal scheduler"
    ],
    step_us: [
      type: {:integer, 1, 1_000_000},
      default: 10_000,
      doc: "Target length of one dirty step in microseconds"
    ],
    notify: [
      type: {:or, [{:value, nil}, :pid]},
      default: nil,
      doc:
        "Sent `{:hotpath_compute_job, job}` when a dirty job starts, to watch it with " <>
          "`Hotpath.Compute.job_info/1` or stop it with `Hotpath.Compute.cancel/1`"
    ]
  ]

  @typedoc "A digest algorithm."
  @type algorithm :: :blake3 | :sha256

  @doc """
  BLAKE3 digest (32 bytes) of `data`. See `hash/3` for the options.

      iex> Hotpath.Digest.blake3("") |> Base.encode16(case: :lower)
      "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
  """
  @spec blake3(iodata(), keyword()) :: binary()
  def blake3(data, opts \\ []), do: hash(:blake3, data, opts)

  @doc """
  SHA-256 digest (32 bytes) of `data`, equal to `:crypto.hash(:sha256, data)`. See `hash/3`.

      iex> Hotpath.Digest.sha256(["a", ?b, ["c"]]) == :crypto.hash(:sha256, "abc")
      true
  """
  @spec sha256(iodata(), keyword()) :: binary()
  def sha256(data, opts \\ []), do: hash(:sha256, data, opts)

  @doc """
  The `algorithm` digest of `data` (a binary or iodata).

  Options:

  #{Hotpath.Options.docs(@schema)}

  Raises `ArgumentError` for an unknown algorithm or data that is not iodata, and
  `Hotpath.PanicError` if native code panicked. Exits with `{:hotpath_digest, :cancelled}`
  if the job was cancelled through `Hotpath.Compute.cancel/1`.

      iex> Hotpath.Digest.hash(:sha256, :binary.copy("x", 100_000), dirty_threshold: 0) ==
      ...>   :crypto.hash(:sha256, :binary.copy("x", 100_000))
      true
  """
  @spec hash(algorithm(), iodata(), keyword()) :: binary()
  def hash(algorithm, data, opts \\ []) do
    if algorithm not in [:blake3, :sha256] do
      raise ArgumentError,
            "unknown digest algorithm #{inspect(algorithm)}; valid algorithms: :blake3, :sha256"
    end

    opts = Hotpath.Options.validate!(opts, @schema, "Hotpath.Digest.hash/3")
    threshold = opts[:dirty_threshold]
    step_us = opts[:step_us]
    progress = opts[:progress]
    notify = opts[:notify]

    size = data_size!(data)

    if size <= threshold do
      Native.digest_small(algorithm, IO.iodata_to_binary(data))
    else
      job = Native.compute_job_new({:digest, algorithm, step_us})

      if notify, do: send(notify, {:hotpath_compute_job, job})

      data
      |> pieces()
      |> Enum.reduce(0, fn piece, done -> feed(job, piece, 0, done, size, progress) end)

      case Native.compute_digest_finish(job) do
        {:ok, digest} -> digest
        {:error, reason} -> fail(reason)
      end
    end
  end

  defp feed(job, piece, offset, done, total, progress) do
    case Native.compute_digest_update(job, piece, offset) do
      {:more, at} ->
        done = done + at - offset
        notify(progress, done, total)
        feed(job, piece, at, done, total, progress)

      {:ok, at} ->
        done = done + at - offset
        notify(progress, done, total)
        done

      {:error, reason} ->
        fail(reason)
    end
  end

  defp fail({:panic, message}), do: raise(Hotpath.PanicError, message: message)
  # The job was cancelled with Hotpath.Compute.cancel/1 while this process is alive.
  defp fail(:cancelled), do: exit({:hotpath_digest, :cancelled})

  defp notify(nil, _done, _total), do: :ok
  defp notify({pid, tag}, done, total), do: send(pid, {tag, done, total})

  @doc false
  # The `:progress` option, as the `{pid, tag}` to send to (a type of the options schema).
  def progress_option(nil), do: {:ok, nil}
  def progress_option(pid) when is_pid(pid), do: {:ok, {pid, :hotpath_digest_progress}}
  def progress_option({pid, _tag} = target) when is_pid(pid), do: {:ok, target}
  def progress_option(_other), do: :error

  defp data_size!(data) when is_binary(data), do: byte_size(data)

  defp data_size!(data) when is_list(data) do
    IO.iodata_length(data)
  rescue
    ArgumentError ->
      raise ArgumentError, "data must be a binary or iodata, got: #{inspect(data, limit: 5)}"
  end

  defp data_size!(data),
    do: raise(ArgumentError, "data must be a binary or iodata, got: #{inspect(data, limit: 5)}")

  @doc false
  # The binaries to hash, in order: large binaries as they are (no copy), runs of small
  # elements joined into pieces of about 64 KiB.
  def pieces(data) when is_binary(data), do: [data]

  def pieces(data) do
    {small, _size, out} = walk(data, {[], 0, []})
    Enum.reverse(flush(small, out))
  end

  defp walk([], acc), do: acc
  defp walk([head | tail], acc), do: walk(tail, walk(head, acc))

  defp walk(bin, {small, _size, out}) when is_binary(bin) and byte_size(bin) >= @piece,
    do: {[], 0, [bin | flush(small, out)]}

  defp walk(bin, {small, size, out}) when is_binary(bin),
    do: add(small, size + byte_size(bin), bin, out)

  defp walk(byte, {small, size, out}) when is_integer(byte), do: add(small, size + 1, byte, out)

  defp add(small, size, item, out) when size >= @piece, do: {[], 0, flush([item | small], out)}
  defp add(small, size, item, out), do: {[item | small], size, out}

  defp flush([], out), do: out
  defp flush(small, out), do: [IO.iodata_to_binary(Enum.reverse(small)) | out]
end
