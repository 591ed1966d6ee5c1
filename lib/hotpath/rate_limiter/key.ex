defmodule Hotpath.RateLimiter.Key do
  @moduledoc false
  # Keys whose encoded size the NIF cannot tell without encoding them: a bignum, a bitstring
  # that is not a binary, an atom that is not Latin-1 (a megabyte bignum shared a thousand
  # times in a tuple is a few words in memory and a gigabyte once encoded). The NIFs that take
  # a key refuse such a key with `:measure` after a walk that bounds its number of terms; it is
  # measured here with `:erlang.external_size/1`, whose cost follows that number, and passed
  # again as `{:"$hotpath_measured_key", term_to_binary(key)}`, the same key for the table.

  alias Hotpath.Native

  @max_bytes 4096

  @doc "Calls `fun` with `key`, and again with its measured form if the NIF asks for it."
  @spec native(term(), (term() -> result)) :: result when result: term()
  def native(key, fun) do
    case fun.(key) do
      :measure -> fun.(measured!(key))
      result -> result
    end
  end

  @doc "Raises `ArgumentError` for a key no limiter accepts, before it is sent elsewhere."
  @spec check!(term()) :: :ok
  def check!(key), do: native(key, &Native.limiter_check_key/1)

  @doc "The measured form of a key the NIF could not measure, or an `ArgumentError`."
  @spec measured!(term()) :: {:"$hotpath_measured_key", binary()}
  def measured!(key) do
    case :erlang.external_size(key) do
      size when size <= @max_bytes ->
        {:"$hotpath_measured_key", :erlang.term_to_binary(key)}

      size ->
        raise ArgumentError,
              "rate limiter keys are at most #{@max_bytes} bytes, got one of #{size} bytes"
    end
  end
end
