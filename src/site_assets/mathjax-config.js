// MathJax 3 settings for the course's pages and slides (loaded before mathjax/tex-svg-full.js, which needs no
// fonts and loads nothing else): the same delimiters as Jupyter, equation numbers as in AMS LaTeX.
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
    tags: "ams"
  },
  svg: {fontCache: "global"},
  options: {
    ignoreHtmlClass: "tex2jax_ignore",
    processHtmlClass: "tex2jax_process"
  }
};
