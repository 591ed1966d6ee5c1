defmodule Hotpath.Options do
  @moduledoc false
  # The one option validator of Hotpath: every public function that takes options describes
  # them in a schema and calls `validate!/3`; the option lists in the docs are generated from
  # the same schema by `docs/1`. No dependency (the model is Oban's `Oban.Validation`, the
  # vocabulary that of NimbleOptions).
  #
  # A schema is a keyword list of `{option, spec}`; a spec is a keyword list of:
  #
  #   * `:type` - see `t:type/0` (default `:any`)
  #   * `:required` - the option must be given (default false)
  #   * `:default` - the value when it is not given (an option with no `:default` that is not
  #     given is left out of the result)
  #   * `:doc` - the text of the generated docs; `:doc_default` - the default as the docs
  #     show it (default: the `:default`, inspected)
  #   * `:hidden` - a test seam: validated, but left out of the docs and of the valid options
  #     an error lists
  #
  # Every refusal is an `ArgumentError` naming the option, what it expected and what it got,
  # and where (`where`: the function or module).

  @typedoc """
  What an option accepts:

    * `:any`, `:boolean`, `:atom`, `:pid`, `:keyword_list`
    * `:name` - an atom other than `nil`, `true` and `false` (a registered name, a module)
    * `:string` - a non-empty binary
    * `{:integer, min, max}` - an integer in `min..max` (`max` may be `:infinity`)
    * `{:in, choices}` - one of `choices`
    * `{:value, term}` - exactly `term` (with `:or`: `:infinity`, `nil`)
    * `{:fun, arity}` - a function of that arity
    * `{:list, type}` - a proper list of that type
    * `{:or, types}` - the first type that accepts the value
    * `{:custom, module, function, expected}` - `module.function(value)` returns
      `{:ok, value}` or `:error` (it may also raise its own `ArgumentError`); `expected` is
      the text the error and the docs show
  """
  @type type ::
          :any
          | :boolean
          | :atom
          | :pid
          | :keyword_list
          | :name
          | :string
          | {:integer, integer(), integer() | :infinity}
          | {:in, [term()]}
          | {:value, term()}
          | {:fun, arity()}
          | {:list, type()}
          | {:or, [type()]}
          | {:custom, module(), atom(), String.t()}

  @type schema :: keyword(keyword())

  @doc """
  Validates `opts` against `schema`: raises `ArgumentError` for what is not a keyword list,
  an unknown option, a missing required one or a value its type refuses; returns the options
  in schema order, with the defaults of those not given.
  """
  @spec validate!(term(), schema(), String.t()) :: keyword()
  def validate!(opts, schema, where) do
    keyword!(opts, where)
    known!(opts, schema, where)

    Enum.flat_map(schema, fn {key, spec} ->
      case Keyword.fetch(opts, key) do
        {:ok, value} ->
          [{key, check!(key, value, Keyword.get(spec, :type, :any), where)}]

        :error ->
          cond do
            spec[:required] ->
              raise ArgumentError,
                    "missing required option #{inspect(key)} (#{where}): expected " <>
                      expected(Keyword.get(spec, :type, :any))

            Keyword.has_key?(spec, :default) ->
              [{key, spec[:default]}]

            true ->
              []
          end
      end
    end)
  end

  @doc """
  Checks one value against a type, as `validate!/3` does for option `key`; returns the value
  (as the type normalises it).
  """
  @spec check!(atom(), term(), type(), String.t()) :: term()
  def check!(key, value, type, where) do
    case cast(value, type) do
      {:ok, value} ->
        value

      :error ->
        raise ArgumentError,
              "#{inspect(key)} must be #{expected(type)}, got: #{describe(value)} " <>
                "(#{where})"
    end
  end

  @doc """
  Raises `ArgumentError` unless `opts` is a keyword list whose keys are all in `schema`;
  returns `opts` (for functions that read options lazily on their own).
  """
  @spec known!(term(), schema(), String.t()) :: keyword()
  def known!(opts, schema, where) do
    keyword!(opts, where)

    case Keyword.keys(opts) -- Keyword.keys(schema) do
      [] ->
        opts

      unknown ->
        shown = for {key, spec} <- schema, !spec[:hidden], do: key

        raise ArgumentError,
              "unknown options #{inspect(unknown)}, valid options are: #{inspect(shown)} " <>
                "(#{where})"
    end
  end

  defp keyword!(opts, where) do
    if not (is_list(opts) and Keyword.keyword?(opts)) do
      raise ArgumentError,
            "#{where} options must be a keyword list, got: #{describe(opts)}"
    end
  end

  @doc false
  # A caller's value in an error message: inspected with limits, and an integer too large to
  # print cheaply by its size (printing a megabit integer in decimal takes seconds, and
  # `inspect/2`'s limits do not shorten integers).
  @spec describe(term()) :: String.t()
  def describe(int) when is_integer(int) and abs(int) > 0xFFFF_FFFF_FFFF_FFFF do
    sign = if int < 0, do: "-", else: ""
    "#{sign}an integer of #{byte_size(:binary.encode_unsigned(abs(int))) * 8} bits"
  end

  def describe(value), do: inspect(value, limit: 10, printable_limit: 100)

  @doc "The option list of `schema` as Markdown, hidden options left out."
  @spec docs(schema()) :: String.t()
  def docs(schema) do
    schema
    |> Enum.reject(fn {_key, spec} -> spec[:hidden] end)
    |> Enum.map_join("\n", fn {key, spec} ->
      "  * `#{inspect(key)}` (#{shape(spec)}) - #{sentence(spec[:doc])}"
    end)
  end

  defp sentence(nil), do: ""
  defp sentence(doc), do: if(String.ends_with?(doc, "."), do: doc, else: doc <> ".")

  defp shape(spec) do
    value = expected(Keyword.get(spec, :type, :any))

    cond do
      spec[:required] -> "#{value}, required"
      Keyword.has_key?(spec, :doc_default) -> "#{value}; default #{spec[:doc_default]}"
      Keyword.has_key?(spec, :default) -> "#{value}; default `#{inspect(spec[:default])}`"
      true -> value
    end
  end

  # ---- types --------------------------------------------------------------------------

  defp cast(value, :any), do: {:ok, value}
  defp cast(value, :boolean) when is_boolean(value), do: {:ok, value}
  defp cast(value, :atom) when is_atom(value), do: {:ok, value}
  defp cast(value, :pid) when is_pid(value), do: {:ok, value}

  defp cast(value, :name) when is_atom(value) and value not in [nil, true, false],
    do: {:ok, value}

  defp cast(value, :string) when is_binary(value) and value != "", do: {:ok, value}

  defp cast(value, :keyword_list) when is_list(value) do
    if Keyword.keyword?(value), do: {:ok, value}, else: :error
  end

  defp cast(value, {:integer, min, max})
       when is_integer(value) and value >= min and (max == :infinity or value <= max),
       do: {:ok, value}

  defp cast(value, {:in, choices}), do: if(value in choices, do: {:ok, value}, else: :error)
  defp cast(value, {:value, value}), do: {:ok, value}
  defp cast(value, {:fun, arity}) when is_function(value, arity), do: {:ok, value}

  defp cast(value, {:list, type}) when is_list(value) do
    if proper_list?(value) do
      Enum.reduce_while(value, {:ok, []}, fn item, {:ok, acc} ->
        case cast(item, type) do
          {:ok, item} -> {:cont, {:ok, [item | acc]}}
          :error -> {:halt, :error}
        end
      end)
      |> case do
        {:ok, items} -> {:ok, Enum.reverse(items)}
        :error -> :error
      end
    else
      :error
    end
  end

  defp cast(value, {:or, types}) do
    Enum.find_value(types, :error, fn type ->
      case cast(value, type) do
        {:ok, _} = ok -> ok
        :error -> nil
      end
    end)
  end

  defp cast(value, {:custom, module, function, _expected}), do: apply(module, function, [value])
  defp cast(_value, _type), do: :error

  @doc "True for a proper list."
  @spec proper_list?(term()) :: boolean()
  def proper_list?([]), do: true
  def proper_list?([_ | tail]), do: proper_list?(tail)
  def proper_list?(_), do: false

  @doc "What `type` accepts, in words."
  @spec expected(type()) :: String.t()
  def expected(:any), do: "any term"
  def expected(:boolean), do: "a boolean"
  def expected(:atom), do: "an atom"
  def expected(:pid), do: "a pid"
  def expected(:keyword_list), do: "a keyword list"
  def expected(:name), do: "a non-nil, non-boolean atom"
  def expected(:string), do: "a non-empty string"
  def expected({:integer, 1, :infinity}), do: "a positive integer"
  def expected({:integer, 0, :infinity}), do: "a non-negative integer"
  def expected({:integer, min, :infinity}), do: "an integer of at least #{min}"
  def expected({:integer, min, max}), do: "an integer in #{min}..#{max}"
  def expected({:in, choices}), do: "one of " <> Enum.map_join(choices, ", ", &inspect/1)
  def expected({:value, value}), do: inspect(value)
  def expected({:fun, arity}), do: "a function of arity #{arity}"
  def expected({:list, type}), do: "a list (each element #{expected(type)})"
  def expected({:or, types}), do: or_list(Enum.map(types, &expected/1))
  def expected({:custom, _module, _function, expected}), do: expected

  defp or_list([one]), do: one
  defp or_list(many), do: Enum.join(Enum.drop(many, -1), ", ") <> " or " <> List.last(many)
end
