package vtptest

// FilteringSample is the event composed for docs/filtering.md §3,
// verbatim: the worked filter examples are evaluated against it.
const FilteringSample = `<?xml version="1.0" encoding="UTF-8"?>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://www.ivoa.net/xml/VOEvent/v2.0 http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd"
    version="2.0" role="observation" ivorn="ivo://example.observatory/survey#cand-0042">
  <Who>
    <AuthorIVORN>ivo://example.observatory/survey</AuthorIVORN>
    <Date>2024-03-01T12:00:00</Date>
  </Who>
  <What>
    <Param name="Packet_Type" value="61" dataType="int"/>
    <Param name="SNR" value="12.5" dataType="float" ucd="stat.snr"/>
    <Group name="flags">
      <Param name="Retracted" value="false"/>
    </Group>
  </What>
  <WhereWhen>
    <ObsDataLocation>
      <ObservatoryLocation id="GEOLUN"/>
      <ObservationLocation>
        <AstroCoordSystem id="UTC-FK5-GEO"/>
        <AstroCoords coord_system_id="UTC-FK5-GEO">
          <Time unit="s"><TimeInstant><ISOTime>2024-03-01T11:59:30.50</ISOTime></TimeInstant></Time>
          <Position2D unit="deg">
            <Name1>RA</Name1><Name2>Dec</Name2>
            <Value2><C1>150.25</C1><C2>-30.5</C2></Value2>
            <Error2Radius>0.05</Error2Radius>
          </Position2D>
        </AstroCoords>
      </ObservationLocation>
    </ObsDataLocation>
  </WhereWhen>
  <Citations>
    <EventIVORN cite="followup">ivo://example.observatory/survey#cand-0041</EventIVORN>
  </Citations>
</voe:VOEvent>
`
