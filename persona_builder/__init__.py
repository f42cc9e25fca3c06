"""Survey respondents -> harmonized persona records -> rendered persona text."""

from persona_builder.persona import Persona, PersonaFileError, Trait, load_personas
from persona_builder.render import FORMATS, TRAIT_SUBSETS, render

__all__ = ["FORMATS", "TRAIT_SUBSETS", "Persona", "PersonaFileError", "Trait", "load_personas", "render"]
