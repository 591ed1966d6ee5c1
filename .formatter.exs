[
  inputs: ["{mix,.formatter}.exs", "{config,lib,test,benches,scripts}/**/*.{ex,exs}"]
]
