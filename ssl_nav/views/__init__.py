"""SimView view extraction: visibility of map instances in each frame, square crops, quality, selection, ViewStore."""
