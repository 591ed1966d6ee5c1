defmodule Hotpath.Options do
  @moduledoc false
  # Checks shared by every public function that takes options.

  @doc """
  Raises `ArgumentError` unless `opts` is a keyword list whose keys are all in `valid`;
  returns `opts`. `where` names the function or module in the messages; `shown` is the list
  of valid options the message shows (default `valid`; hidden options are left out of it).
  """
  @spec validate_keys!(term(), [atom()], String.t(), [atom()]) :: keyword()
  def validate_keys!(opts, valid, where, shown \\ nil) do
    unless is_list(opts) and Keyword.keyword?(opts) do
      raise ArgumentError,
            "#{where} options must be a keyword list, got: #{inspect(opts)}"
    end

    case Keyword.keys(opts) -- valid do
      [] ->
        opts

      unknown ->
        raise ArgumentError,
              "unknown options #{inspect(unknown)}, valid options are: " <>
                "#{inspect(shown || valid)} (#{where})"
    end
  end
end
